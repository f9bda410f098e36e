"""The ablation driver's recipe rows and choices, and the table renderer (experiments/)."""

import json
from pathlib import Path

import pytest

from experiments import ablation, render_ablation

REPO = Path(__file__).resolve().parents[1]


def test_rows_switch_the_components_on_one_by_one():
    settings = {"learning_rate": 1e-4, "erl_weight": 2.0, "em_ratio": 0.3, "copypaste_prob": 0.5}
    flags = {row: " ".join(ablation.row_args(row, settings)) for row in ablation.ROWS}
    assert "--no_copypaste --erl_weight 0 --em_select none" in flags[1]
    assert "--copypaste " in flags[2] and "--erl_weight 0 --em_select none" in flags[2]
    assert "--erl_weight 2.0 --em_select none" in flags[3]
    assert "--em_select energy --em_ratio 0.3" in flags[4]
    assert "--em_select random --em_ratio 0.3" in flags[5]
    assert all("--learning_rate 0.0001" in f for f in flags.values())


def test_every_row_parses_and_trains_with_the_ablations_objective():
    """AAM on, no teacher, no head warm-up, as the ablation of 2026-11-27 ran, whatever train_eisv's defaults
    for a fine-tune are now (row 1 without the AAM loss would have nothing to train)."""
    from eisv_training.arguments import parse_arguments

    settings = {"learning_rate": 1e-4, "erl_weight": 2.0, "em_ratio": 0.3, "copypaste_prob": 0.5}
    for row in ablation.ROWS:
        _, model, _, _ = parse_arguments(ablation.common_args("ge2e", "shared", 0) + ablation.row_args(row, settings))
        assert (model.aam_weight, model.kd_weight, model.kd_contrast_weight, model.head_warmup_epochs) == (1.0, 0.0, 0.0, 0.0)


def _summary(run, eer):
    return {"row": run.row, "settings": run.settings, "validation": {"best_eer": eer}}


def test_choice_takes_the_lowest_validation_eer_per_knob():
    runs = ablation.sweep_runs("ge2e")
    assert len({run.id for run in runs}) == len(runs)
    eers = {run.id: 20.0 for run in runs}
    eers["ge2e-sweep-baseline-lr5e-05"] = 18.0
    eers["ge2e-sweep-full-em_ratio0.3"] = 19.0
    chosen = ablation.choose("ge2e", [_summary(run, eers[run.id]) for run in runs])["settings"]
    assert chosen == dict(ablation.START["ge2e"], learning_rate=5e-5, em_ratio=0.3)


def _table_run(encoder, row, seed, eer):
    conditions = {c: {"eer": eer + 1} for c, _ in render_ablation.CONDITIONS}
    return {"id": f"{encoder}-row{row}-seed{seed}", "encoder": encoder, "stage": "table", "row": row,
            "row_name": ablation.ROWS.get(row, "no fine-tuning"), "seed": seed, "settings": {},
            "validation": {"best_eer": eer, "best_epoch": 3, "results": {"overall": {"min_dcf_0.01": 0.9}}},
            "test": {"overall": {"eer": eer, "min_dcf_0.01": 0.9}, "by_condition": conditions},
            "stats": {"device": "NVIDIA H100", "wall_s": 60}}


def test_render_gives_mean_std_relative_change_and_verdicts(tmp_path):
    (tmp_path / "json").mkdir()
    values = {1: [20.0, 21.0, 22.0], 2: [19.0, 19.5, 20.0], 3: [19.0, 19.5, 20.0], 4: [15.0, 15.5, 16.0],
              5: [19.0, 19.5, 20.0]}
    for row, eers in values.items():
        for seed, eer in enumerate(eers):
            run = _table_run("ge2e", row, seed, eer)
            (tmp_path / "json" / f"{run['id']}.json").write_text(json.dumps(run))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{render_ablation.START}\nold\n{render_ablation.END}\nend\n")
    render_ablation.main(["--output", str(tmp_path), "--readme", str(readme)])
    table = (tmp_path / "table.md").read_text()
    assert "| 1. baseline (AAM only) | 3 | 21.00 ± 1.00 |" in table
    assert "-26.2%" in table  # row 4: 15.5 against 21.0
    assert "full recipe (row 4 vs 1): helped" in table
    assert "ERL loss (row 3 vs 2): no clear effect" in table
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("end\n") and "old" not in text and "-26.2%" in text


def test_the_results_page_shows_the_committed_tables_as_rendered_now():
    page = (REPO / "docs" / "results.md").read_text()
    block = page.split(render_ablation.START + "\n", 1)[1].split(render_ablation.END, 1)[0]
    text = render_ablation.render(REPO / "results" / "ablation")
    assert block == text == (REPO / "results" / "ablation" / "table.md").read_text()


def test_render_refuses_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit, match="json"):
        render_ablation.main(["--output", str(tmp_path / "none")])


def test_later_stages_queue_their_runs_with_the_chosen_settings(tmp_path, monkeypatch):
    queued = []
    monkeypatch.setattr(ablation.Scheduler, "run", lambda self, runs: queued.extend(runs) or True)
    monkeypatch.setattr(ablation, "evaluate_pretrained", lambda *a: queued.append("row0"))
    (tmp_path / "init").mkdir()
    (tmp_path / "init" / "config.json").write_text("{}")
    chosen = {e: {"settings": dict(ablation.START[e], erl_weight=2.0)} for e in ablation.ENCODERS}
    (tmp_path / "chosen.json").write_text(json.dumps(chosen))
    common = ["--output", str(tmp_path), "--ge2e_init", str(tmp_path / "init"), "--seeds", "0", "1"]
    for stage in ("table", "alternatives", "stability"):
        assert ablation.main(common + ["--stage", stage]) == 0
    runs = [run for run in queued if run != "row0"]
    assert queued.count("row0") == 1
    assert sum(run.stage == "table" for run in runs) == 2 * len(ablation.ROWS) * 2
    assert sum(run.stage == "alternative" for run in runs) == 2 * len(ablation.ALTERNATIVES) * 2
    assert sum(run.stage == "stability" for run in runs) == 3 * 5  # GE2E only: 3 learning rates x 5 seeds
    table = next(run for run in runs if run.id == "ecapa-row3-seed1")
    assert "--erl_weight 2.0" in " ".join(table.args) and "--seed 1" in " ".join(table.args)
    assert "--no_test_on_trials" not in table.args
    alternative = next(run for run in runs if run.id == "ge2e-alt-em-second-member-seed0")
    assert alternative.args[-2:] == ["--em_members", "second"]
