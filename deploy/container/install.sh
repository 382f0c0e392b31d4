#!/usr/bin/env bash
# What reelserve needs installed, in one place: the container image (deploy/container/Dockerfile)
# runs these steps, and CI runs the same ones on its fresh machine (.ci/run), so a broken step
# fails CI even though no image is built there.
#
#   install.sh os serve      Debian packages `reelserve serve` needs at run time
#   install.sh os build      ... plus what the export and the tests need (CI: `os build`)
#   install.sh python VENV serve|build [--editable]
#                            a virtualenv at VENV with reelserve from this checkout: `serve` = the
#                            serving extras and `labels publish` (no torch); `build` = export,
#                            tests and benches, always editable (the CPU torch wheel first, pinned,
#                            so nothing pulls a CUDA build); --editable: `serve` from the checkout
#                            in place (the tests' copy of the image's environment), not a wheel
# PYTHON: the interpreter that makes the virtualenv (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."

# Run time: nginx is the front door (`serve --replicas N`); libGL/GLib are loaded by opencv under
# the OCR step; ca-certificates for TLS to the registries; Debian's python3 (3.11: the wheel has a
# python-backend stub for it) unless the python3 on PATH can already make a virtualenv.
OS_SERVE=(nginx libgl1 libglib2.0-0 ca-certificates)
"${PYTHON:-python3}" -c "import venv, ensurepip" 2>/dev/null || OS_SERVE+=(python3 python3-venv)
# Build and test: a C toolchain for wheels that build from source, openssl for the TLS test
# certificates, promtool (Debian's prometheus) for the rules, espeak-ng for the speech the ASR tests
# transcribe, make for the README's commands.
OS_BUILD=("${OS_SERVE[@]}" make gcc openssl prometheus espeak-ng)

TORCH=torch==2.13.0  # the CPU wheel; export, kernels and tests only
NUMPY='numpy<2'      # the python-backend stub of Triton 2.51 dies on BYTES inputs with numpy 2

os_packages() {
  local packages
  case "$1" in
    serve) packages=("${OS_SERVE[@]}") ;;
    build) packages=("${OS_BUILD[@]}") ;;
    *) echo "install.sh os: serve or build, not '$1'" >&2; exit 2 ;;
  esac
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then echo "OS packages present: ${packages[*]}"; return; fi
  echo "installing OS packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The nginx package may start a system nginx on port 80; reelserve runs its own.
  if command -v service >/dev/null && pgrep -x nginx >/dev/null; then service nginx stop || true; fi
}

python_env() {
  local venv="$1" kind="$2" editable="${3:-}"
  "${PYTHON:-python3}" -m venv "$venv"
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check)
  "${pip[@]}" install --quiet --upgrade pip
  case "$kind" in
    serve)
      case "$editable" in
        --editable) "${pip[@]}" install --quiet "$NUMPY" -e ".[serve,asr-runtime,labels]" ;;
        "") "${pip[@]}" install --quiet "$NUMPY" ".[serve,asr-runtime,labels]" ;;
        *) echo "install.sh python VENV serve: --editable or nothing, not '$editable'" >&2; exit 2 ;;
      esac
      ;;
    build)
      "${pip[@]}" install --quiet "$TORCH" "$NUMPY"
      "${pip[@]}" install --quiet -e '.[dev]'
      # timm only for its ImageNet class-name data files; its deps would pull torchvision + CUDA torch.
      "${pip[@]}" install --quiet --no-deps timm==1.0.31
      ;;
    *) echo "install.sh python VENV: serve or build, not '$kind'" >&2; exit 2 ;;
  esac
  "$venv/bin/python" - "$kind" <<'EOF'
import importlib.util, sys
import numpy
assert numpy.__version__ < "2", "numpy 2 breaks the python-backend stub on BYTES inputs"
torch = importlib.util.find_spec("torch")
if sys.argv[1] == "serve":
    assert torch is None, "the serving environment must not carry torch"
else:
    import torch
    assert torch.version.cuda is None, "a CUDA torch got installed"
EOF
}

case "${1:-}" in
  os) os_packages "${2:?serve or build}" ;;
  python) python_env "${2:?VENV}" "${3:?serve or build}" "${4:-}" ;;
  *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
