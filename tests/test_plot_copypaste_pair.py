import soundfile

from data_collators.plot_copypaste_pair import main


def test_writes_png_and_the_pair_as_wav(synthetic_corpus, tmp_path):
    out = tmp_path / "plot"
    main(["--data", str(synthetic_corpus), "--output", str(out), "--speaker", "spk0"])
    assert (out / "copypaste_pair.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("pair_first.wav", "pair_second.wav"):
        wave, rate = soundfile.read(out / name)
        assert rate == 16000 and len(wave) <= 32000 and abs(wave).max() > 0.01
    assert not list(out.glob("*.tmp"))
