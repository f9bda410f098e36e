#!/usr/bin/env bash
# Install eisv with its test tools into the current Python (3.10+). Safe to re-run.
# resemblyzer is installed without its dependencies: its `webrtcvad` needs pkg_resources, which
# current setuptools lacks; `webrtcvad-wheels` (in the test extra) provides the same module.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
python -m pip install --quiet --disable-pip-version-check --no-deps "resemblyzer==0.1.4"
