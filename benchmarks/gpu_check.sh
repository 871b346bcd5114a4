#!/usr/bin/env bash
# Issues 31 and 27's GPU checks in one call for a session lent a GPU (every stage time-boxed,
# 560 s in all, under the 600 s of one device call):
#   1. every CUDA-marked test of the suite (`-m cuda`: Triton kernels, recompute on Triton,
#      device/precision/resume/import/methods on CUDA, learning helpers) plus the kernel tests
#      whose names say cuda, against the CUDA reference;
#   2. the Open Neuromorphic workload (Linear(16384, 16384) + LIF, batch 16, T = 500) and the
#      FC and conv nets, CUDA-synchronised timing, spikeweave vs the ANN vs SpikingJelly
#      (skipped with a reason where it does not import: no network there, peers travel as
#      wheels, see benchmarks/README.md);
#   3. peak memory per step over T = 4 .. 1000 (save / recompute / chunked, SpikingJelly if
#      importable), torch.cuda.max_memory_allocated;
#   4. issue 27's epoch benchmark: seconds per Fashion-MNIST epoch (60,000 images, T = 4,
#      batch 128, fp32 and bf16) of the default conv net beside SpikingJelly and the ANN
#      (bench_epoch.py; IDX files from $FASHION_MNIST, default /usr/share/datasets/fashion-mnist:
#      a machine without them logs the error in epoch.log and the other stages still count).
# A second call, `bash benchmarks/gpu_check.sh --activation-memory` (at most 120 s), runs issue
# 31 item 2's check alone: the trainer's activation_memory modes (save / pack / checkpoint /
# checkpoint+pack) on the conv net, batch 8, T = 4 .. 1000, peak memory
# (torch.cuda.max_memory_allocated) and time per step.
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
FMNIST="${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
[ "${1:-}" = "--dry-run" ] && DRY=1
ACT=0
[ "${1:-}" = "--activation-memory" ] && ACT=1

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

if [ $ACT = 1 ]; then
    DEV=cuda
    stage activation 120 "$PY" benchmarks/bench_activation_memory.py --device cuda \
        --steps 4 128 512 1000 --reps 3 --out "$OUT/activation_memory_cuda"
elif [ $DRY = 1 ]; then
    DEV=cpu
    stage tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/functional/test_memory.py \
        -k "cuda or bits" -rs
    # the CUDA-marked tests are collected (and skip, saying why) without a GPU
    stage cuda_marked 120 "$PY" -m pytest -q -p no:cacheprovider tests -m cuda -rs
    stage step 300 "$PY" benchmarks/bench_step.py --device cpu --nets fc --libs ann,spikeweave,spikingjelly \
        --rounds 1 --per-round 1 --sweeps "" --no-memory --threads 1 --out "$OUT/step_dry"
    stage memory 180 "$PY" benchmarks/bench_memory.py --device cpu --n 64 --steps 4 16 \
        --workloads on --arms save recompute spikingjelly --reps 1 --threads 1 --peak \
        --out "$OUT/memory_dry"
    stage epoch 240 "$PY" benchmarks/bench_epoch.py --device cpu --data "$FMNIST" --images 256 \
        --rounds 1 --warmup 1 --libs spikeweave,ann --precisions fp32 --no-memory --threads 1 \
        --out "$OUT/epoch_dry"
    stage activation 300 "$PY" benchmarks/bench_activation_memory.py --device cpu --steps 2 4 \
        --input 1 8 8 --channels 4 8 --hidden 16 --reps 1 --threads 1 \
        --out "$OUT/activation_memory_dry"
else
    DEV=cuda
    # 1. every CUDA-marked test of the suite (device, precision, resume, methods, import)
    stage cuda_marked 140 "$PY" -m pytest -q -p no:cacheprovider tests -m cuda -rs
    #    and the kernel tests gated by a skipif (about 400 small cases)
    stage tests 100 "$PY" -m pytest -q -p no:cacheprovider tests/functional/test_triton.py \
        tests/functional/test_memory.py -k "cuda" -rs
    # 2. time per step, interleaved, synchronised (bench_step's CUDA path)
    stage step 100 "$PY" benchmarks/bench_step.py --device cuda --nets on,fc,conv \
        --libs ann,spikeweave,spikingjelly --rounds 5 --per-round 2 --sweeps "" --no-memory \
        --out "$OUT/step_issue31_cuda"
    # 3. peak memory per step over T (the Open Neuromorphic shape)
    stage memory 100 "$PY" benchmarks/bench_memory.py --device cuda --n 16384 \
        --steps 4 100 500 1000 --workloads on --arms save recompute chunked spikingjelly \
        --reps 3 --peak --out "$OUT/memory_issue31_cuda"
    # 4. seconds per epoch on the full Fashion-MNIST training set, synchronised, interleaved
    stage epoch 110 "$PY" benchmarks/bench_epoch.py --device cuda --data "$FMNIST" \
        --images 60000 --rounds 1 --warmup 1 --libs spikeweave,spikingjelly,ann \
        --precisions fp32,bf16 --out "$OUT/epoch_issue27_cuda"
fi
echo "device: $DEV; results in $OUT"
cat "$OUT/status.txt"
