#!/usr/bin/env bash
# What a lent GPU machine runs, in one go: the kernel benchmark, then `make gpu-check`'s two
# commands. Written for the `device` machines here: a CUDA image with torch and Triton, no
# internet, no TensorRT (its library wheels are on NVIDIA's index, not PyPI), 16 cores.
#
#   bash deploy/gpu/lease-check.sh OUT_DIR
#
# Each step has its own time limit, so a slow one still leaves the others their figures; every
# step's output and exit status land in OUT_DIR (summary.txt lists them). Exits non-zero when a
# step that should pass on any GPU machine (install, benchmark, kernel tests) did not.
set -uo pipefail

out=${1:?usage: lease-check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
py=${PYTHON:-python3}
failed=0

step() {  # step NAME SECONDS MUST_PASS COMMAND...
    local name=$1 limit=$2 must=$3
    shift 3
    local start=$SECONDS
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" > >(tee "$out/$name.log") 2>&1
    local rc=$?
    echo "$name rc=$rc ${limit}s-limit $((SECONDS - start))s" | tee -a "$out/summary.txt"
    if [[ $rc -ne 0 && $must == yes ]]; then failed=1; fi
}

step machine 60 yes bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv;
    $py -c 'import sys, torch, triton; print(sys.version.split()[0], torch.__version__, triton.__version__,
    torch.cuda.get_device_name(), torch.cuda.get_device_capability())'; nproc"
# The image's own torch and Triton stay: install this checkout alone, importable as `reelserve.*`.
step install 120 yes "$py" -m pip install -q --no-deps --no-build-isolation --no-index -e .
step bench-bf16 150 yes "$py" -m reelserve.kernels.bench --dtype bf16
step bench-fp16 150 yes "$py" -m reelserve.kernels.bench --dtype fp16
# `make gpu-check`, its two commands; the sweep spread over the cores (pytest-xdist is in the image).
xdist=()
if "$py" -c "import xdist" 2>/dev/null; then xdist=(-n "${GPU_TEST_WORKERS:-12}"); fi
step gpu-check-tests "${GPU_TEST_SECONDS:-300}" yes "$py" -m pytest -q -p no:cacheprovider -m "slow or not slow" --durations=10 \
    "${xdist[@]}" --junitxml="$out/gpu-check-tests.xml" tests/kernels tests/export/test_tensorrt_gpu.py
step gpu-check 120 no "$py" -m reelserve.cli gpu-check --out "$out/gpu-out"
exit $failed
