"""Training throughput of NEDS: trials per second, fraction of matmul peak, memory over an epoch.

One training step = forward + backward + AdamW step + scheduler step, multimodal mode with
multi-task masking (the schemes drawn per trial), exactly as ``neds.train.train`` runs it.

Cases (``--case``):
* ``default``: the model of config/config.yaml on the default-sized data;
* ``paper5``: the paper's 5-layer model (H 256, 8 heads, MLP 512, dropout 0.4, token dropout 0.2)
  on 10 sessions of 300 units, batch 16;
* ``paper22``: the 22-layer model (GPU memory at batch 64).

FLOPs per step are the model's matrix products counted from its layer shapes (``bench/flops.py``:
a multiply-add = 2 FLOPs, backward = 2x forward), divided by the step time and by a float32 (CPU)
/ bfloat16 (GPU) matmul peak measured in the same run. ``torch.utils.flop_counter.FlopCounterMode``'s
count of one step is kept as ``counter_gflop_per_step``, a cross-check only: it counts nothing for
the fused CPU attention kernel and counts the recomputation of Q K^T in the CUDA kernels' backward.

``--loss`` names the balance of the modalities' losses (``training.loss``, default ``weights`` at
weight 1 each); ``gradnorm`` scales each modality's gradient where it enters the trunk, in a hook
on the trunk's output (one norm per modality per step, no extra backward pass).

Run:  python bench/bench_training.py --case paper5 [--threads 2] [--device cpu] [--loss gradnorm] [--out bench/out/x.json]
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
from flops import model_flops  # bench/, the folder of this script

from neds.data.dataset import random_trials
from neds.model.balance import LossBalance, null_deviances
from neds.model.masking import SCHEMES, draw_masks
from neds.model.neds import ModelConfig
from neds.train import build_model
from neds.vocab import LOSS_BALANCES

CASES = {
    "default": dict(
        model=dict(hidden=64, n_heads=4, mlp=128, n_layers=2, dropout=0.1, token_dropout=0.1),
        sessions=4,
        units=100,
        batch=16,
    ),
    "paper5": dict(
        model=dict(hidden=256, n_heads=8, mlp=512, n_layers=5, dropout=0.4, token_dropout=0.2),
        sessions=10,
        units=300,
        batch=16,
    ),
    "paper22": dict(
        model=dict(hidden=256, n_heads=8, mlp=512, n_layers=22, dropout=0.4, token_dropout=0.2),
        sessions=74,
        units=300,
        batch=64,
    ),
}


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, n: int | None = None, repeats: int = 10) -> float:
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(
    case: str,
    device: torch.device,
    steps: int,
    attention_dropout: float = 0.0,
    batch: int | None = None,
    loss: str = "weights",
) -> dict:
    spec = CASES[case]
    batch = batch or spec["batch"]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_units = [spec["units"]] + [int(spec["units"] * f) for f in rng.uniform(0.7, 1.0, spec["sessions"] - 1)]
    data = random_trials(n_units, max(2 * batch // spec["sessions"] + 1, 64), splits=(1.0, 0.0, 0.0))  # >= 2 batches
    cfg = ModelConfig(**spec["model"], attention_dropout=attention_dropout)
    model = build_model(cfg, data.n_units).to(device)
    balance = LossBalance(loss, nulls=null_deviances(data, data.indices("train"))).to(device)
    groups = [{"params": list(model.parameters())}, {"params": list(balance.parameters()), "weight_decay": 0.0}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=1e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10_000, pct_start=0.15)
    gen = torch.Generator().manual_seed(0)
    bf16 = device.type == "cuda"
    idx_all = data.indices("train")

    def step(i):
        idx = idx_all[torch.randperm(len(idx_all), generator=gen)[:batch]]
        b = data.batch(idx).to(device, non_blocking=True)
        masks = draw_masks(batch, 100, 0.3, gen, SCHEMES).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(b, masks)
        total, _ = balance(model.loss_terms(out, b, masks), b.session, out.shared)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        return total

    model.train()
    from torch.utils.flop_counter import FlopCounterMode

    for i in range(3):  # warm-up
        step(i)
    with FlopCounterMode(display=False) as counter:
        step(0)
    flops = model_flops(cfg, max(data.n_units), batch)["train_step"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    rss = []
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
        if device.type == "cpu":
            rss.append(rss_mib())
    sync(device)
    dt = (time.perf_counter() - t0) / steps
    peak = matmul_peak_gflops(device, torch.bfloat16 if bf16 else torch.float32)
    res = {
        "case": case,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "attention_dropout": attention_dropout,
        "loss": loss,
        "n_shared_parameters": model.n_shared_parameters(),
        "step_s": dt,
        "trials_per_s": batch / dt,
        "gflop_per_step": flops / 1e9,
        "counter_gflop_per_step": counter.get_total_flops() / 1e9,
        "achieved_gflops": flops / dt / 1e9,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": flops / dt / 1e9 / peak,
    }
    if rss:
        res.update(
            rss_first_mib=rss[0],
            rss_last_mib=rss[-1],
            rss_max_mib=max(rss),
            rss_every_10_steps_mib=[round(r) for r in rss[::10]],
        )
    if device.type == "cuda":
        res["cuda_max_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), default="paper5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--attention-dropout", type=float, default=0.0)
    parser.add_argument("--loss", choices=LOSS_BALANCES, default="weights")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    res = run_case(args.case, torch.device(args.device), args.steps, args.attention_dropout, args.batch, args.loss)
    res.update(machine=f"{platform.machine()}, {os.cpu_count()} cpus", torch=torch.__version__)
    if args.device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name(0)
    for k, v in res.items():
        print(f"{k:24s} {v:.4g}" if isinstance(v, float) else f"{k:24s} {v}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
