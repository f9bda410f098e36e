"""eisv_evaluation.report: the note that names the corpora on which a calibrated decision is unbalanced."""

from eisv_evaluation.report import decision_note, markdown_report, unbalanced_corpora


def results(by_corpus, calibrated=True):
    def metrics(miss, false_alarm):
        out = {"num_targets": 10, "num_nontargets": 10, "eer": 20.0}
        if calibrated:
            out.update({"miss_at_p0.5": miss, "false_alarm_at_p0.5": false_alarm})
        return out
    groups = {"overall": metrics(20.0, 20.0), "by_corpus": {k: metrics(*v) for k, v in by_corpus.items()},
              "by_condition": {}}
    return {"num_trials": 20, "num_files": 8, "scoring": "cosine", "metrics": {"cosine": groups},
            "calibration": {"scale": 10.0, "offset": -6.0, "scores": "cosine", "source": "cal.csv"} if calibrated else None}


def test_only_the_corpora_whose_errors_are_more_than_ten_points_apart_are_named():
    report = results({"emodb": (36.5, 18.6), "ravdess": (20.0, 25.0), "other": (5.0, 15.0)})
    assert unbalanced_corpora(report["metrics"]["cosine"]) == [("emodb", 36.5, 18.6)]
    note = decision_note(report)
    assert "emodb (miss 36.5%, false alarms 18.6%)" in note and "ravdess" not in note and "other" not in note
    assert "eisv-calibrate" in note
    text = markdown_report(report)
    assert "## Decisions" in text and "emodb (miss 36.5%" in text


def test_no_note_for_balanced_or_uncalibrated_decisions():
    assert decision_note(results({"ravdess": (20.0, 25.0)})) is None
    uncalibrated = results({"emodb": (36.5, 18.6)}, calibrated=False)
    assert decision_note(uncalibrated) is None and "## Decisions" not in markdown_report(uncalibrated)


def test_with_as_norm_as_the_primary_score_the_decision_is_read_on_the_scores_it_was_calibrated_for():
    report = results({"emodb": (36.5, 18.6)})
    uncalibrated_as_norm = {"overall": {"eer": 19.0}, "by_corpus": {"emodb": {"eer": 25.0}}, "by_condition": {}}
    report.update(scoring="as_norm", metrics={"as_norm": uncalibrated_as_norm, **report["metrics"]})
    assert "emodb (miss 36.5%" in decision_note(report)
    report["calibration"]["scores"] = "as_norm"  # calibrated on AS-norm scores, which are balanced here
    assert decision_note(report) is None
