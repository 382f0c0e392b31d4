#!/usr/bin/env bash
# What a lent GPU machine runs, in one go: the kernel benchmark, the kernel tests, `gpu-check`.
# Written for the `device` machines here: a CUDA image with torch and Triton, no internet, no
# TensorRT (its library wheels are on NVIDIA's index, not PyPI), 16 cores, a 15-minute lease.
#
#   bash deploy/gpu/lease-check.sh OUT_DIR [STEP...]     (default: every step, in this order)
#
# Steps: machine, install, bench-bf16, bench-fp16, tests (the default selection, as CI runs it on
# CPU, here compiled for the GPU), sweep (the slow sweeps `make gpu-check` adds: about 25 minutes
# on 12 workers by one partial run, mostly autotuning, so time-boxed: a timeout leaves it incomplete, not failed),
# gpu-check (engines and parity; says why not where TensorRT is missing). Each step's output and
# exit status land in OUT_DIR (summary.txt lists them). Exits non-zero when a step failed.
set -uo pipefail

out=${1:?usage: lease-check.sh OUT_DIR [STEP...]}
shift
steps=${*:-machine install bench-bf16 bench-fp16 tests sweep gpu-check}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
py=${PYTHON:-python3}
failed=0

step() {  # step NAME SECONDS COMMAND...   (skipped unless NAME is in $steps)
    local name=$1 limit=$2
    shift 2
    [[ " $steps " == *" $name "* ]] || return 0
    local start=$SECONDS
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" > >(tee "$out/$name.log") 2>&1
    local rc=$?
    local verdict=ok
    if [[ $rc -eq 124 && $name == sweep ]]; then verdict="incomplete (time limit)"
    elif [[ $rc -eq 2 && $name == gpu-check ]]; then verdict="not runnable here (its log says why)"
    elif [[ $rc -ne 0 ]]; then verdict=FAILED; failed=1; fi
    echo "$name rc=$rc $verdict, $((SECONDS - start))s of ${limit}s" | tee -a "$out/summary.txt"
}

xdist=()
if "$py" -c "import xdist" 2>/dev/null; then xdist=(-n "${GPU_TEST_WORKERS:-12}"); fi
pytest=("$py" -m pytest -q -p no:cacheprovider -rfE "${xdist[@]}")

step machine 60 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv;
    $py -c 'import sys, torch, triton; print(sys.version.split()[0], torch.__version__, triton.__version__,
    torch.cuda.get_device_name(), torch.cuda.get_device_capability())'; nproc"
# The image's own torch and Triton stay: install this checkout alone, importable as `reelserve.*`.
step install 120 "$py" -m pip install -q --no-deps --no-build-isolation --no-index -e .
step bench-bf16 150 "$py" -m reelserve.kernels.bench --dtype bf16
step bench-fp16 150 "$py" -m reelserve.kernels.bench --dtype fp16
step tests "${GPU_TESTS_SECONDS:-240}" "${pytest[@]}" --durations=5 tests/kernels tests/export/test_tensorrt_gpu.py
step sweep "${GPU_SWEEP_SECONDS:-200}" "${pytest[@]}" -m slow tests/kernels
step gpu-check 120 "$py" -m reelserve.cli gpu-check --out "$out/gpu-out"
exit $failed
