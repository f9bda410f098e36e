"""Docstring examples (`>>>`) run as doctests: the model blocks' in modeling_eisv, and the evaluate metric's.

Every modeling_eisv module with an example is run, except those named in NOT_RUN with the reason, so
a new example is run without anyone listing it here.
"""

import doctest
import importlib
import io
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "modeling_eisv"
# Examples that need what a doctest does not have; what they show is tested elsewhere.
NOT_RUN = {"pipeline_speaker_verification": "illustrative: needs a model folder and two recordings "
                                            "(tests/test_pipeline.py runs the pipeline)"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules_with_examples() -> list[str]:
    return sorted(path.stem for path in PACKAGE.glob("*.py") if ">>>" in path.read_text(encoding="utf-8"))


def run_examples(module) -> tuple[int, int, str]:
    """-> (attempted, failed, doctest's report of the failures) for the examples in `module`."""
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in doctest.DocTestFinder().find(module, module.__name__):
        runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    return result.attempted, result.failed, report.getvalue()


def test_every_example_runs_or_says_why_not():
    found = modules_with_examples()
    assert set(found) - set(NOT_RUN), "no modeling_eisv module has a `>>>` example to run"
    assert set(NOT_RUN) <= set(found), f"NOT_RUN names modules without examples: {sorted(set(NOT_RUN) - set(found))}"


@pytest.mark.parametrize("name", [name for name in modules_with_examples() if name not in NOT_RUN])
def test_modeling_eisv_examples(name):
    attempted, failed, report = run_examples(importlib.import_module(f"modeling_eisv.{name}"))
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} example lines in modeling_eisv/{name}.py fail:\n{report}"


def test_metric_example(monkeypatch):
    """The metric's own example loads it by the relative path the README uses, so it runs from the repository root."""
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.chdir(REPO)
    metric = evaluate.load("metrics/speaker_verification")
    attempted, failed, report = run_examples(sys.modules[type(metric).__module__])
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} example lines in metrics/speaker_verification fail:\n{report}"
