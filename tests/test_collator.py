import numpy as np
import pytest
import torch

from data_collators import AudioStore, EISVCollator, SpeakerEmotionBatchSampler, index_dataset, load_source
from modeling_eisv import EISVFeatureExtractor, EISVForSpeakerVerification

FE = EISVFeatureExtractor("kaldi_fbank")
BASELINE = dict(copypaste=False, pair_without_copypaste=False, em_select="none")


@pytest.fixture
def indexed(synthetic_corpus):
    ds, _ = index_dataset(load_source(synthetic_corpus))
    return ds, AudioStore(ds)


def _batch_rows(ds, seed=0):
    sampler = SpeakerEmotionBatchSampler(ds["speaker_id"], ds["emotion_id"], speakers_per_batch=3,
                                         utterances_per_speaker=4, seed=seed)
    return next(iter(sampler))


def test_baseline_is_plain_crops_without_pairs_or_mask(indexed):
    ds, store = indexed
    rows = _batch_rows(ds)
    batch = EISVCollator(FE, store, **BASELINE)([ds[r] for r in rows])
    assert set(batch) == {"input_features", "attention_mask", "labels", "pair_index", "em_mask", "neutral_rows"}
    # Plain crops everywhere: the teacher anchor's neutral reference is exactly the neutral rows.
    assert batch["neutral_rows"].tolist() == [bool(store.is_neutral[r]) for r in rows]
    assert batch["input_features"].shape == (12, FE.num_frames(32000), 80)
    assert batch["input_features"].dtype == torch.float32 and batch["attention_mask"].dtype == torch.int32
    expected = [min(FE.num_frames(int(store.lengths[r])), 198) for r in rows]
    assert batch["attention_mask"].sum(1).tolist() == expected  # 2 s crops, shorter clips whole
    assert batch["labels"].tolist() == [ds[r]["speaker_id"] for r in rows]
    assert batch["pair_index"].shape == (0, 2) and not batch["em_mask"].any()


def test_copypaste_composites_are_never_the_neutral_reference(indexed):
    ds, store = indexed
    rows = _batch_rows(ds)
    batch = EISVCollator(FE, store, copypaste_prob=1.0, em_ratio=0.2)([ds[r] for r in rows])
    paired = set(batch["pair_index"].flatten().tolist())
    assert paired and not any(batch["neutral_rows"][list(paired)].tolist())


def test_full_recipe_pairs_share_labels_and_masks_match_ratio(indexed):
    ds, store = indexed
    rows = _batch_rows(ds)
    collator = EISVCollator(FE, store, copypaste_prob=1.0, em_ratio=0.2)
    batch = collator(rows)  # plain row indices work as well as dataset rows
    pairs = batch["pair_index"]
    assert pairs.shape == (6, 2)  # 3 speakers x 4 utterances -> 6 pairs, every row in one
    assert sorted(pairs.flatten().tolist()) == list(range(12))
    assert (batch["labels"][pairs[:, 0]] == batch["labels"][pairs[:, 1]]).all()
    real = batch["attention_mask"].sum(1)
    assert ((batch["em_mask"].sum(1) - 0.2 * real).abs() <= 2).all()
    assert not (batch["em_mask"] & (batch["attention_mask"] == 0)).any()
    assert sum(collator.counts.values()) == 6


def test_em_members_second_masks_only_the_second_member(indexed):
    ds, store = indexed
    batch = EISVCollator(FE, store, copypaste_prob=1.0, em_members="second")(_batch_rows(ds))
    masked = batch["em_mask"].any(1)
    assert masked[batch["pair_index"][:, 1]].all() and not masked[batch["pair_index"][:, 0]].any()


def test_pairs_without_copypaste_are_real_utterances_of_two_emotions(indexed):
    ds, store = indexed
    rows = _batch_rows(ds, seed=4)
    batch = EISVCollator(FE, store, copypaste=False, pair_without_copypaste=True, em_select="none")(rows)
    pairs = batch["pair_index"].numpy()
    assert len(pairs) == 6
    emotions = np.asarray([ds[r]["emotion_id"] for r in rows])
    speakers = np.asarray([ds[r]["speaker"] for r in rows])
    multi = speakers[pairs[:, 0]] != "spk3"  # spk3 has one emotion
    assert (emotions[pairs[multi, 0]] != emotions[pairs[multi, 1]]).all()


def test_copypaste_prob_zero_without_real_pairs_gives_no_pairs(indexed):
    ds, store = indexed
    batch = EISVCollator(FE, store, copypaste_prob=0.0, pair_without_copypaste=False)(_batch_rows(ds))
    assert batch["pair_index"].shape == (0, 2) and not batch["em_mask"].any()


def test_same_seed_same_batch_other_seed_other_batch(indexed):
    ds, store = indexed
    rows = _batch_rows(ds)
    one, two = EISVCollator(FE, store, seed=3)(rows), EISVCollator(FE, store, seed=3)(rows)
    for key in one:
        assert torch.equal(one[key], two[key]), key
    other = EISVCollator(FE, store, seed=4)(rows)
    assert not torch.equal(one["input_features"], other["input_features"])
    collator = EISVCollator(FE, store, seed=3)
    collator.set_epoch(1)
    assert not torch.equal(collator(rows)["input_features"], one["input_features"])


def test_multi_worker_dataloader_gives_the_same_batches(indexed):
    ds, store = indexed
    sampler = SpeakerEmotionBatchSampler(ds["speaker_id"], ds["emotion_id"], 3, 2, seed=0)
    collator = EISVCollator(FE, store, seed=11)
    serial = list(torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collator))
    workers = list(torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collator, num_workers=2))
    assert len(serial) == len(workers) >= 3
    for a, b in zip(serial, workers):
        assert torch.equal(a["input_features"], b["input_features"]) and torch.equal(a["em_mask"], b["em_mask"])
    # worker-seeded: seed=None draws from each worker's torch seed; batches stay valid
    seeded = list(torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=2,
                                              collate_fn=EISVCollator(FE, store, seed=None)))
    assert all(len(b["pair_index"]) == 3 for b in seeded)
    assert not torch.equal(seeded[0]["input_features"], seeded[1]["input_features"])


def test_model_accepts_the_batch(indexed):
    from tests._tiny import tiny_config

    ds, store = indexed
    model = EISVForSpeakerVerification(tiny_config(num_speakers=len(store.speakers), erl_weight=1.0)).train()
    batch = EISVCollator(FE, store, copypaste_prob=1.0)(_batch_rows(ds))
    out = model(**batch)
    assert torch.isfinite(out.loss) and out.erl_loss > 0 and out.embeddings.shape[0] == 12
    out.loss.backward()


def test_ge2e_features_and_bad_knobs(indexed):
    ds, store = indexed
    batch = EISVCollator(EISVFeatureExtractor("ge2e_mel"), store)(_batch_rows(ds))
    assert batch["input_features"].shape == (12, 201, 40) and batch["em_mask"].shape == (12, 201)
    with pytest.raises(ValueError, match="em_select='loud'"):
        EISVCollator(FE, store, em_select="loud")
    with pytest.raises(ValueError, match="em_members"):
        EISVCollator(FE, store, em_members="one")
    with pytest.raises(ValueError, match="outside the audio store"):
        EISVCollator(FE, store)([len(store)])


def test_real_speech_batch(shared_data):
    ds = load_source(shared_data / "emodb")
    ds = ds.filter(lambda s: s in ("emodb_03", "emodb_08", "emodb_09"), input_columns="speaker")
    ds, _ = index_dataset(ds)
    store = AudioStore(ds)
    rows = next(iter(SpeakerEmotionBatchSampler(ds["speaker_id"], ds["emotion_id"], 3, 4, seed=0)))
    collator = EISVCollator(FE, store, copypaste_prob=1.0, em_ratio=0.25)
    batch = collator([ds[r] for r in rows])
    pairs = batch["pair_index"]
    assert len(pairs) == 6 and (batch["labels"][pairs[:, 0]] == batch["labels"][pairs[:, 1]]).all()
    assert ((batch["em_mask"].sum(1) - 0.25 * batch["attention_mask"].sum(1)).abs() <= 2).all()
    assert torch.isfinite(batch["input_features"]).all()


@pytest.mark.parametrize("feature_type", ["kaldi_fbank", "ge2e_mel"])
def test_waveforms_for_device_features_give_the_same_batch(indexed, feature_type):
    ds, store = indexed
    extractor = EISVFeatureExtractor(feature_type)
    rows = _batch_rows(ds)
    on_workers = EISVCollator(extractor, store, seed=5)(rows)
    raw = EISVCollator(extractor, store, seed=5, return_waveforms=True)(rows)
    assert "input_features" not in raw and raw["waveforms"].shape[0] == len(rows)
    features, mask = extractor.extract(raw["waveforms"], raw["num_samples"])
    assert torch.allclose(features, on_workers["input_features"], atol=1e-5)
    assert torch.equal(mask, on_workers["attention_mask"])
    for key in ("labels", "pair_index", "em_mask"):
        assert torch.equal(raw[key], on_workers[key])


def test_epoch_tagged_items_match_set_epoch(indexed):
    """Persistent DataLoader workers never see set_epoch; items carrying their epoch give the same batch."""
    ds, store = indexed
    extractor = EISVFeatureExtractor()
    rows = _batch_rows(ds)
    collator = EISVCollator(extractor, store, seed=5)
    collator.set_epoch(3)
    expected = collator(rows)
    tagged = EISVCollator(extractor, store, seed=5)([{"row_index": r, "epoch": 3} for r in rows])
    assert torch.equal(tagged["input_features"], expected["input_features"])
    assert torch.equal(tagged["em_mask"], expected["em_mask"])
    other_epoch = EISVCollator(extractor, store, seed=5)([{"row_index": r, "epoch": 4} for r in rows])
    assert not torch.equal(other_epoch["input_features"], expected["input_features"])
    with pytest.raises(ValueError, match="epochs"):
        collator([{"row_index": rows[0], "epoch": 1}, {"row_index": rows[1], "epoch": 2}])
