"""experiments/generalisation.py, render_generalisation.py and export_best_model.py on the committed results."""

import json
from pathlib import Path

from experiments import export_best_model, generalisation, render_generalisation

RESULTS = Path(__file__).resolve().parents[1] / "results" / "generalisation"


def test_every_protection_is_queued_with_three_seeds_and_the_rows_reuse_row_4():
    settings = {"learning_rate": 2e-4, "erl_weight": 1.0, "em_ratio": 0.1, "copypaste_prob": 0.5}
    protect = generalisation.protect_runs(settings, [0, 1, 2])
    assert len(protect) == 3 * len(generalisation.PROTECTIONS)
    rows = generalisation.row_runs(settings, "lpft-kd-same-10", [0, 1, 2])
    assert {r.row for r in rows} == {1, 2, 3, 4, 5}
    assert [r.id for r in rows if r.row == 4] == [f"ge2e-protect-lpft-kd-same-10-seed{s}" for s in (0, 1, 2)]
    assert all("--kd_weight" in r.extra for r in rows)  # every row carries the protection
    fragile = generalisation.fragility_runs(settings)
    assert sorted({r.extra[1] for r in fragile}) == ["bf16", "no"] and all("--no_test_on_trials" in r.extra for r in fragile)


def test_every_run_means_what_its_protection_says_whatever_the_fine_tune_defaults():
    """The runs pin AAM on, no teacher, no warm-up; each protection's flags (after them) change only what they
    name. train_eisv's defaults for a fine-tune (the third round's protection) must not leak into a run."""
    from eisv_training.arguments import parse_arguments

    settings = {"learning_rate": 2e-4, "erl_weight": 1.0, "em_ratio": 0.1, "copypaste_prob": 0.5}
    for run in generalisation.protect_runs(settings, [0]) + generalisation.row_runs(settings, "inv-kd-neutral-10", [0]):
        argv = (generalisation.common_args("shared", "ge2e-init", 0) + generalisation.row_args(run.row, run.settings)
                + run.extra)
        _, model, _, _ = parse_arguments(argv)
        flags = dict(zip(run.extra[::2], run.extra[1::2]))
        assert model.aam_weight == float(flags.get("--aam_weight", 1)), run.id
        assert model.kd_weight == float(flags.get("--kd_weight", 0)), run.id
        assert model.head_warmup_epochs == float(flags.get("--head_warmup_epochs", 0)), run.id
        assert model.kd_contrast_weight == float(flags.get("--kd_contrast_weight", 0)), run.id


def test_the_protection_is_chosen_on_validation_scores_only():
    chosen = generalisation.choose_protection(RESULTS, [0, 1, 2])
    assert chosen == json.loads((RESULTS / "chosen.json").read_text())
    best = min(chosen["mean_selection_score"].items(), key=lambda kv: kv[1])
    assert chosen["protection"] == best[0]


def test_a_protection_run_again_counts_in_the_choice(tmp_path):
    """Runs repeated under OUTPUT/repeats (e.g. on other hardware) enter the protection's mean: a protection
    whose first three runs were lucky does not win on them alone."""
    def write(folder, name, seed, score):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"ge2e-protect-{name}-seed{seed}.json").write_text(
            json.dumps({"seed": seed, "validation": {"best_eer": score}}))

    lucky, steady = "inv-kd-neutral-10-contrast-1", "inv-kd-neutral-10-contrast-3"
    for seed in (0, 1, 2):
        write(tmp_path / "json", lucky, seed, -0.2)
        write(tmp_path / "repeats" / "json", lucky, seed, 0.0)
        write(tmp_path / "json", steady, seed, -0.15)
    chosen = generalisation.choose_protection(tmp_path, [0, 1, 2])
    assert abs(chosen["mean_selection_score"][lucky] + 0.1) < 1e-9
    assert chosen["protection"] == steady
    write(tmp_path / "json", "inv-kd-neutral-3", 0, -0.9)  # one seed only: does not compete
    assert "inv-kd-neutral-3" not in generalisation.choose_protection(tmp_path, [0, 1, 2])["mean_selection_score"]
    # a partial repeat weighs its seed once, not twice; a seed outside --seeds does not count
    write(tmp_path / "repeats" / "json", steady, 0, -0.45)
    write(tmp_path / "json", steady, 7, 5.0)
    score = generalisation.choose_protection(tmp_path, [0, 1, 2])["mean_selection_score"][steady]
    assert abs(score - (-0.3 - 0.15 - 0.15) / 3) < 1e-9


def test_the_tables_come_from_the_json():
    text = render_generalisation.render(RESULTS)
    start = json.loads((RESULTS / "json" / "ge2e-start.json").read_text())
    assert f"| {start['test']['overall']['eer']:.2f} |" in text
    chosen = json.loads((RESULTS / "chosen.json").read_text())["protection"]
    assert f"{chosen} (chosen)" in text and "| bf16 | 10 |" in text and "| float32 | 0 |" in text
    # the rows with every protection they were run with, each under its own heading
    assert "(inv-kd-neutral-10)\n" in text and "an earlier round's choice (lpft-kd-same-10)" in text
    assert "1. baseline (no AAM here: the teacher anchor alone)" in text
    assert "inv-kd-neutral-10-contrast-1, run again (NVIDIA H200)" in text and "3 run again" in text
    assert "1. baseline (no AAM here: the teacher anchor and its margin loss alone)" in text


def test_the_results_page_shows_the_tables_as_rendered_now():
    page = (RESULTS.parents[1] / "docs" / "results.md").read_text()
    block = page.split(render_generalisation.START + "\n", 1)[1].split(render_generalisation.END, 1)[0]
    assert block == render_generalisation.render(RESULTS)


def test_the_trimmed_training_table_comes_from_its_runs_and_the_results_page_quotes_it():
    groups = {"untrimmed": [RESULTS / "repeats", RESULTS / "seeds-3-5"], "trimmed": [RESULTS / "vad-trim"]}
    lines = render_generalisation.front_end_table(groups).splitlines()
    start_untrimmed, runs_untrimmed, start_trimmed, runs_trimmed = lines[2:]
    assert "| 25.00 |" in start_untrimmed and "| 22.87 |" in start_trimmed  # each under the start of its front end
    assert "| 6 | 6 of 6 |" in runs_untrimmed and "| 6 | 3 of 6 |" in runs_trimmed
    page = (RESULTS.parents[1] / "docs" / "results.md").read_text()
    for line in (runs_untrimmed, runs_trimmed):
        cells = [c.strip() for c in line.split("|")[4:-2]]  # selected .. neutral check, as the page shows them
        assert " | ".join(cells).replace("-", "−") in page.replace("**", "")


def test_a_fine_tune_ships_only_when_it_passes_every_check():
    start = json.loads((RESULTS / "json" / "ge2e-start.json").read_text())
    candidate = export_best_model.pick_candidate(RESULTS)
    assert all(export_best_model.checks(candidate, start).values())  # the committed results: the fine-tune ships
    worse_on = {"dev ALL minDCF(0.01) <= start": ("test", "overall", "min_dcf_0.01", 1.0),
                "EmoDB EER <= start": ("test", "by_corpus", "emodb", "eer", 99.0),
                "neutral check EER <= start": ("validation", "results", "neutral_trials", "overall", "eer", 1.0),
                "neutral_vs_emotional EER < start": ("test", "by_condition", "neutral_vs_emotional", "eer", 99.0)}
    for check, (*keys, last, value) in worse_on.items():
        worse = json.loads(json.dumps(candidate))
        group = worse
        for key in keys:
            group = group[key]
        group[last] = value
        failed = [name for name, ok in export_best_model.checks(worse, start).items() if not ok]
        assert failed == [check]
