#!/usr/bin/env bash
# The one prepared device check (run on a lent GPU machine from the repository root):
# CUDA paths of neds.train (bf16 autocast, checkpoint, resume, evaluation) and GPU throughput.
#   OUT=bench/out bash bench/gpu_check.sh
# Needs python3 with torch, numpy, pandas, xarray, tqdm, pyyaml (no ONE/ibllib/zarr needed).
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
run() { echo "== $*"; python3 "$@" || echo "FAILED: $*"; }
run bench/train_cuda_check.py --device cuda --out "$OUT/train_cuda.json"
run bench/bench_training.py --case default --device cuda --steps 50 --out "$OUT/default_cuda.json"
run bench/bench_training.py --case paper5 --device cuda --steps 50 --out "$OUT/paper5_cuda_b16.json"
run bench/bench_training.py --case paper5 --device cuda --steps 30 --batch 256 --out "$OUT/paper5_cuda_b256.json"
run bench/bench_training.py --case paper5 --device cuda --steps 50 --attention-dropout 0.1 --out "$OUT/paper5_cuda_b16_attndrop.json"
run bench/bench_training.py --case paper22 --device cuda --steps 20 --batch 64 --out "$OUT/paper22_cuda_b64.json"
