#!/usr/bin/env bash
# Issue 31's GPU checks in one time-boxed call (under 8 minutes), for a session lent a GPU:
#   1. the CUDA-marked tests (Triton kernels, recompute on Triton), against the CUDA reference;
#   2. the Open Neuromorphic workload (Linear(16384, 16384) + LIF, batch 16, T = 500) and the
#      FC and conv nets, CUDA-synchronised timing, spikeweave vs the ANN vs SpikingJelly
#      (skipped with a reason where it does not import: no network there, peers travel as
#      wheels, see benchmarks/README.md);
#   3. peak memory per step over T = 4 .. 1000 (save / recompute / chunked, SpikingJelly if
#      importable), torch.cuda.max_memory_allocated.
# Results (logs, .json, .md) go under $OUT (default ./gpu_check_out). Every stage has its own
# timeout, so a hang in one still leaves the others' results.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run  # anywhere: the same stages, tiny and on the CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1

{
    date -u
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    "$PY" -c "import triton; print('triton', triton.__version__)" 2>&1 | tail -1
    "$PY" -c "import spikingjelly; print('spikingjelly', getattr(spikingjelly, '__version__', '?'))" \
        2>&1 | tail -1
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

stage() {  # stage NAME SECONDS CMD...: run with a timeout, log to $OUT/NAME.log, keep going
    local name=$1 secs=$2
    shift 2
    echo "== $name (at most ${secs}s)"
    timeout --kill-after=10 "$secs" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc" | tee -a "$OUT/status.txt"
    tail -n 5 "$OUT/$name.log"
}

if [ $DRY = 1 ]; then
    DEV=cpu
    stage tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/functional/test_memory.py \
        -k "cuda or bits" -rs
    stage step 300 "$PY" benchmarks/bench_step.py --device cpu --nets fc --libs ann,spikeweave,spikingjelly \
        --rounds 1 --per-round 1 --sweeps "" --no-memory --threads 1 --out "$OUT/step_dry"
    stage memory 180 "$PY" benchmarks/bench_memory.py --device cpu --n 64 --steps 4 16 \
        --workloads on --arms save recompute spikingjelly --reps 1 --threads 1 --peak \
        --out "$OUT/memory_dry"
else
    DEV=cuda
    # 1. every CUDA-marked test of the kernels (about 400 small cases)
    stage tests 150 "$PY" -m pytest -q -p no:cacheprovider tests/functional/test_triton.py \
        tests/functional/test_memory.py -k "cuda" -rs
    # 2. time per step, interleaved, synchronised (bench_step's CUDA path)
    stage step 150 "$PY" benchmarks/bench_step.py --device cuda --nets on,fc,conv \
        --libs ann,spikeweave,spikingjelly --rounds 5 --per-round 2 --sweeps "" --no-memory \
        --out "$OUT/step_issue31_cuda"
    # 3. peak memory per step over T (the Open Neuromorphic shape)
    stage memory 150 "$PY" benchmarks/bench_memory.py --device cuda --n 16384 \
        --steps 4 100 500 1000 --workloads on --arms save recompute chunked spikingjelly \
        --reps 3 --peak --out "$OUT/memory_issue31_cuda"
fi
echo "device: $DEV; results in $OUT"
cat "$OUT/status.txt"
