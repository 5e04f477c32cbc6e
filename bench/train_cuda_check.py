"""Device check of neds.train on CUDA: bf16 autocast, checkpoints, interruption and resume, evaluation.

Trains the paper's 5-layer model on random data of 10 sessions x 300 units through the same
``neds.train.train`` the workflow uses, stops after one epoch as if killed, resumes, and
evaluates. Prints and writes (``--out``) the measured throughput and the checks.

Run:  python bench/train_cuda_check.py --device cuda --out bench/out/train_cuda.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchio import emit_json  # bench/, the folder of this script

from neds.data.dataset import random_trials
from neds.model.neds import ModelConfig
from neds.train import TrainConfig, build_model, evaluate, load_model, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = random_trials([300] + [int(300 * f) for f in rng.uniform(0.7, 1.0, 9)], 120, splits=(0.7, 0.15, 0.15))
    cfg = ModelConfig(hidden=256, n_heads=8, mlp=512, n_layers=5, dropout=0.4, token_dropout=0.2)
    tcfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch, max_lr=2e-4, val_every=1, device=args.device, progress=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        first = train(build_model(cfg, data.n_units), data, tcfg, out, stop_after_epoch=1)
        summary = train(build_model(cfg, data.n_units), data, tcfg, out)  # resumes from epoch 1
        wall = time.perf_counter() - t0
        model, ckpt = load_model(out / "model.pt", map_location=args.device)
        metrics = evaluate(model.to(args.device), data, "test", torch.device(args.device))
    res = {
        "device": summary["device"],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
        "torch": torch.__version__,
        "interrupted": first,
        "epochs": summary["epochs"],
        "train_trials": int(len(data.indices("train"))),
        "batch": args.batch,
        "trials_per_second_in_train_loop": summary["trials_per_second"],
        "wall_s_including_validation_and_checkpoints": wall,
        "best_epoch": summary["best_epoch"],
        "test_metrics_random_data": metrics,
        "cuda_max_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    emit_json(res, args.out)


if __name__ == "__main__":
    main()
