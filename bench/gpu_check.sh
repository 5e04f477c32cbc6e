#!/usr/bin/env bash
# The one prepared device check (run on a lent GPU machine from the repository root):
# CUDA paths of neds.train (bf16 autocast, checkpoint, resume, evaluation), the workflow's
# pretraining and fine-tuning stages on a finished default run's binned sessions, and GPU throughput.
#   OUT=bench/out RUN=.gpu/run bash bench/gpu_check.sh
# Needs python3 with torch, numpy, pandas, xarray, tqdm, pyyaml; zarr for the stages check
# (carried as wheels in .whl/ when the machine lacks it). RUN: a default run's results/ folder
# (binned/, models/pretrain/model.pt, models/finetune/<HELDOUT>/model.pt); skipped when absent.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-bench/out} RUN=${RUN:-.gpu/run} HELDOUT=${HELDOUT:-cc5eee9b-e991-3f3f-a89b-52c7e7df4ee8}
mkdir -p "$OUT"
if ! python3 -c "import zarr" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
run() { echo "== $*"; timeout 240 python3 "$@" || echo "FAILED: $*"; }
if [ -d "$RUN/binned" ]; then
  run bench/gpu_stages_check.py --run "$RUN" --heldout "$HELDOUT" --work /tmp/stages --out "$OUT/stages_cuda.json"
fi
run bench/train_cuda_check.py --device cuda --out "$OUT/train_cuda.json"
run bench/bench_training.py --case default --device cuda --steps 50 --out "$OUT/default_cuda.json"
run bench/bench_training.py --case paper5 --device cuda --steps 50 --out "$OUT/paper5_cuda_b16.json"
run bench/bench_training.py --case paper5 --device cuda --steps 50 --loss gradnorm --out "$OUT/paper5_cuda_b16_gradnorm.json"
run bench/bench_training.py --case paper22 --device cuda --steps 20 --batch 128 --out "$OUT/paper22_cuda_b128.json"
run bench/bench_training.py --case paper22 --device cuda --steps 10 --batch 512 --out "$OUT/paper22_cuda_b512.json"
run bench/bench_training.py --case paper5 --device cuda --steps 30 --batch 256 --out "$OUT/paper5_cuda_b256.json"
