"""Validation quality and speed with and without dropout on the attention probabilities.

On CPU, ``scaled_dot_product_attention`` with ``dropout_p > 0`` leaves the fused flash kernel for
the slow math path. NEDS therefore applies its dropout on the residual branches (attention output
and MLP) and uses ``attention_dropout: 0`` by default. This script trains the default model from
scratch on binned sessions with both settings (same seed, data and budget) and reports the
validation metrics and the training time.

Run (after `snakemake --cores 2` has binned the default sessions):
    python bench/bench_attention_dropout.py [--stores results/binned/<eid>.zarr ...] [--epochs 30]
"""

from __future__ import annotations

import argparse
import glob
import json
import tempfile
import time

import torch

from neds.data.dataset import load_sessions
from neds.io.store import is_usable
from neds.model.neds import ModelConfig
from neds.train import TrainConfig, build_model, evaluate, load_model, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", nargs="*", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stores = args.stores or [p for p in sorted(glob.glob("results/binned/*.zarr")) if is_usable(p)][-1:]
    data = load_sessions(stores)
    rows = []
    for p_attn, p_res in ((0.0, 0.1), (0.1, 0.1)):
        cfg = ModelConfig(
            hidden=64, n_heads=4, mlp=128, n_layers=2, dropout=p_res, token_dropout=0.1, attention_dropout=p_attn
        )
        tcfg = TrainConfig(
            epochs=args.epochs, batch_size=16, max_lr=5e-4, mask_ratio=0.1, val_every=5, device="cpu", progress=False
        )
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(42)
            t0 = time.perf_counter()
            summary = train(build_model(cfg, data.n_units), data, tcfg, tmp)
            seconds = time.perf_counter() - t0
            model, _ = load_model(f"{tmp}/model.pt")
            test = evaluate(model, data, "test")
        rows.append(
            {
                "attention_dropout": p_attn,
                "residual_dropout": p_res,
                "train_s": seconds,
                "best_epoch": summary["best_epoch"],
                "val_score": summary["best_score"],
                **{f"test_{k}": v for k, v in test.items()},
            }
        )
        print(json.dumps(rows[-1]))
    print("stores:", stores)


if __name__ == "__main__":
    main()
