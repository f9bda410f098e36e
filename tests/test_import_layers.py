"""The layers import one way (docs/design.md): importing a layer loads none of the layers above it.

eisv_io is standard library only; modeling_eisv loads only eisv_io of the other packages; eisv_evaluation loads the
model and eisv_io but not the CLIs, training or the collators. Each check runs in a fresh interpreter,
so what another test imported does not count.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("eisv_io", "modeling_eisv", "data_collators", "eisv_evaluation", "eisv_tools", "eisv_training",
           "model_cards", "experiments", "train_eisv")


def loaded_after_importing(package: str) -> set:
    """Top-level module names that importing every module of `package` adds to `sys.modules`, in a fresh process
    (less what the interpreter loads at start-up, e.g. from site-packages' .pth files)."""
    code = (f"import sys; before = set(sys.modules); import importlib, pkgutil; "
            f"package = importlib.import_module({package!r}); "
            "[importlib.import_module(f'{package.__name__}.{m.name}') for m in pkgutil.iter_modules(package.__path__)"
            " if not m.name.startswith(('convert_', 'pipeline_'))]; "
            "print(' '.join(sorted({name.split('.')[0] for name in set(sys.modules) - before})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_eisv_io_loads_only_the_standard_library():
    loaded = loaded_after_importing("eisv_io") - {"eisv_io"}
    outside = sorted(name for name in loaded if name not in sys.stdlib_module_names and not name.startswith("_"))
    assert not outside, f"importing eisv_io loads {outside}"


@pytest.mark.parametrize("package, below", [
    ("modeling_eisv", {"modeling_eisv", "eisv_io"}),
    ("eisv_evaluation", {"eisv_evaluation", "modeling_eisv", "eisv_io"}),
])
def test_a_layer_loads_no_layer_above_it(package, below):
    above = sorted((loaded_after_importing(package) & set(PROJECT)) - below)
    assert not above, f"importing {package} loads {above}"
