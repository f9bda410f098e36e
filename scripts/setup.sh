#!/usr/bin/env bash
# Install eisv with its test tools into the current Python (3.10+). Safe to re-run; non-interactive.
#
# Which torch build (torch/torchaudio are pinned in pyproject.toml):
#   EISV_TORCH=pypi (default)  torch from PyPI, as `pip install -e .` alone would do (alias: gpu); the
#                              script contacts nothing but the package index pip is configured with.
#   EISV_TORCH=auto            a CPU-only Linux machine (no nvidia-smi, no ROCm) whose network
#                              reaches PyTorch's CPU wheel index gets the CPU build (a 0.2 GB
#                              download, ~0.7 GB installed, instead of ~4.5 GB of torch, NVIDIA
#                              libraries and triton); otherwise PyPI's torch (CUDA on Linux).
#   EISV_TORCH=cpu             the CPU build from PyTorch's CPU index, also on a GPU machine; an
#                              installed CUDA build of the pinned version is replaced.
#   EISV_TORCH_INDEX=URL       another CPU wheel index (a mirror); default PyTorch's own.
# An installed torch of the pinned version is otherwise kept whatever its build (CUDA, ROCm, CPU),
# and the rest is installed from PyPI with that build pinned, so it is never swapped.
# When the CPU index cannot be reached (checked with a 5 s timeout) the install falls back to PyPI
# with a one-line notice.
#
# resemblyzer is installed without its dependencies: its `webrtcvad` needs pkg_resources, which
# current setuptools lacks; `webrtcvad-wheels` (in the test extra) provides the same module.
set -euo pipefail
cd "$(dirname "$0")/.."

PIP=(python -m pip install --quiet --disable-pip-version-check)
MODE="${EISV_TORCH:-pypi}"
CPU_INDEX="${EISV_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
note() { echo "setup.sh: $*" >&2; }

# The pins, read from pyproject.toml so they are stated once.
TORCH_VERSION=$(sed -n 's/^ *"torch==\([^"]*\)",*$/\1/p' pyproject.toml)
AUDIO_VERSION=$(sed -n 's/^ *"torchaudio==\([^"]*\)",*$/\1/p' pyproject.toml)
if [[ -z "$TORCH_VERSION" || -z "$AUDIO_VERSION" ]]; then
    note "cannot read the torch/torchaudio pins from pyproject.toml"; exit 1
fi

# What is installed now: "<torch version> <torchaudio version> <cuda|rocm|cpu>" or "none".
installed() {
    python - <<'EOF' 2>/dev/null || echo none
import importlib.metadata as m
try:
    torch, audio = m.version("torch"), m.version("torchaudio")
except m.PackageNotFoundError:
    print("none")
else:
    cuda = any(r.startswith("nvidia-") for r in (m.requires("torch") or []))
    print(torch, audio, "cuda" if cuda else "rocm" if "+rocm" in torch else "cpu")
EOF
}

# Exit 0 when the index answers within 5 s (DNS included); honours https_proxy like pip.
reachable() {
    python - "$1" <<'EOF'
import sys, threading, urllib.request
ok = []
def probe():
    try:
        with urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5) as answer:
            ok.append(answer.status == 200)
    except Exception:
        pass
thread = threading.Thread(target=probe, daemon=True)
thread.start()
thread.join(5)
sys.exit(0 if ok == [True] else 1)
EOF
}

has_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 || [[ -e /proc/driver/nvidia/version || -e /dev/nvidia0 ]] \
        || command -v rocm-smi >/dev/null 2>&1 || [[ -e /dev/kfd ]]
}

case "$MODE" in
    auto|cpu|pypi) ;;
    gpu) MODE=pypi ;;
    *) note "EISV_TORCH=$MODE: use auto, cpu or pypi"; exit 2 ;;
esac

# A version matches its pin with or without a local label (2.11.0, 2.11.0+cpu, 2.11.0+cu130).
matches() { [[ "$1" == "$2" || "$1" == "$2+"* ]]; }
read -r HAVE_TORCH HAVE_AUDIO HAVE_BUILD _ <<<"$(installed) - - -"
PINNED=no
matches "$HAVE_TORCH" "$TORCH_VERSION" && matches "$HAVE_AUDIO" "$AUDIO_VERSION" && PINNED=yes

WANT_CPU=no
if [[ "$MODE" == cpu ]]; then
    WANT_CPU=yes
elif [[ "$MODE" == auto && "$(uname -s)" == Linux ]] && ! has_gpu; then
    if [[ "$PINNED" == yes ]]; then
        if [[ "$HAVE_BUILD" == cuda ]]; then
            note "keeping the installed CUDA build of torch $HAVE_TORCH on this GPU-less machine; EISV_TORCH=cpu replaces it with the CPU build"
        fi
    else
        WANT_CPU=yes
    fi
fi

if [[ "$WANT_CPU" == yes && "$PINNED" == yes && "$HAVE_BUILD" == cpu ]]; then
    :  # the CPU build of the pinned version is there already: nothing to fetch, works offline
elif [[ "$WANT_CPU" == yes ]]; then
    if ! reachable "$CPU_INDEX"; then
        if [[ "$PINNED" == yes ]]; then
            note "PyTorch's CPU index ($CPU_INDEX) cannot be reached; keeping the installed $HAVE_BUILD build of torch $HAVE_TORCH"
        else
            note "PyTorch's CPU index ($CPU_INDEX) cannot be reached; installing torch from PyPI instead (the CUDA build on Linux)"
        fi
    elif [[ "$PINNED" == yes ]]; then
        note "replacing the installed $HAVE_BUILD build of torch $HAVE_TORCH with the CPU build from $CPU_INDEX"
        "${PIP[@]}" --force-reinstall --no-deps --index-url "$CPU_INDEX" \
            "torch==$TORCH_VERSION" "torchaudio==$AUDIO_VERSION"
        if [[ "$HAVE_BUILD" == cuda ]]; then
            note "the NVIDIA libraries and triton it used stay installed; if nothing else in this Python needs them, \`python -m pip freeze | grep -E '^(nvidia-|triton)' | cut -d= -f1 | xargs python -m pip uninstall -y\` removes them"
        fi
    else
        note "installing the CPU build of torch $TORCH_VERSION from $CPU_INDEX"
        "${PIP[@]}" --index-url "$CPU_INDEX" "torch==$TORCH_VERSION" "torchaudio==$AUDIO_VERSION"
    fi
fi

# Everything else from PyPI, with the torch build now installed (if any) pinned exactly.
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
read -r HAVE_TORCH HAVE_AUDIO HAVE_BUILD _ <<<"$(installed) - - -"
if matches "$HAVE_TORCH" "$TORCH_VERSION" && matches "$HAVE_AUDIO" "$AUDIO_VERSION"; then
    printf 'torch==%s\ntorchaudio==%s\n' "$HAVE_TORCH" "$HAVE_AUDIO" >"$CONSTRAINTS"
fi
"${PIP[@]}" --constraint "$CONSTRAINTS" -e ".[test]"
"${PIP[@]}" --no-deps "resemblyzer==0.1.4"
