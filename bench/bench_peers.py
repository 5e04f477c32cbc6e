"""Training step time of NEDS and its peers (POYO+, NDT2) at the sizes of a configuration.

One step = the model's masks, forward, loss, backward and an AdamW step, as ``neds.train.train``
runs it, on batches of random trials shaped like the default simulated sessions (4 sessions of
60 to 120 units, 100 bins of 20 ms, about 0.11 spikes per unit and bin, so about 2000 spike
events per trial), with the spike events POYO+ reads. Each architecture in each mode it trains
in: NEDS multimodal (pretraining and fine-tuning), NDT2 self-supervised (pretraining) and
decoding (fine-tuning), POYO+ decoding (both).

Run:  python bench/bench_peers.py [--config config/config.yaml] [--threads 1] [--steps 10] [--device cpu] [--out x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from neds.config import model_settings, validate_config
from neds.data.dataset import random_trials
from neds.train import build_stage_model

CASES = ("pretrain", "ndt2_pretrain", "ndt2_finetune", "poyo_pretrain")
"""One stage per architecture and mode (the fine-tuning stages train the same model as their
pretraining, except NDT2's, which changes mode)."""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(config: dict, stage: str, device: torch.device, steps: int, batch: int, rate: float) -> dict:
    rng = np.random.default_rng(0)
    n_units = [int(u) for u in rng.integers(60, 121, 4)]
    data = random_trials(n_units, 64, rate=rate, splits=(1.0, 0.0, 0.0), events=True)
    torch.manual_seed(0)
    model = build_stage_model(stage, model_settings(config, stage), data)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    idx_all = data.indices("train")
    bf16 = device.type == "cuda"

    def step() -> None:
        idx = idx_all[torch.randperm(len(idx_all), generator=gen)[:batch]]
        b = data.batch(idx).to(device, non_blocking=True)
        masks = model.draw_masks(batch, 100, 0.3, gen, None)
        masks = masks.to(device) if masks is not None else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(b, masks)
        loss, _ = model.loss(out, b, masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = (time.perf_counter() - t0) / steps
    events = (data.event_offsets[1:] - data.event_offsets[:-1]).float().mean().item()
    return {
        "stage": stage,
        "architecture": model.architecture,
        "mode": model.mode,
        "batch": batch,
        "events_per_trial": round(events),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "step_s": dt,
        "trials_per_s": batch / dt,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.11, help="spikes per unit and bin")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = validate_config(yaml.safe_load(Path(args.config).read_text()))
    device = torch.device(args.device)
    rows = [run_case(config, stage, device, args.steps, args.batch, args.rate) for stage in CASES]
    for r in rows:
        print(
            f"{r['stage']:15s} {r['architecture']:10s} {r['mode']:16s} params {r['n_parameters']:>9,d}  "
            f"{r['step_s'] * 1e3:8.1f} ms/step  {r['trials_per_s']:7.1f} trials/s"
        )
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "torch": torch.__version__,
        "threads": args.threads,
        "device": args.device,
        "config": args.config,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
