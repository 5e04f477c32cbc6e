"""Device check of the workflow's training stages on CUDA, on binned sessions of a finished run.

Runs what the ``pretrain_model`` and ``finetune_model`` rules run (``neds.stages.launch_training``,
one GPU) with the settings recorded in that run's own checkpoints, only the device changed to
'cuda', then scores the held-out session's test trials with the same code as the workflow's
validation metrics, and writes the wall times beside the CPU run's metrics.

    python bench/gpu_stages_check.py --run results --heldout <eid> --out bench/out/stages_cuda.json

``--run`` is a finished default run's ``results/`` folder (or a copy holding ``binned/`` and
``models/{pretrain,finetune/<eid>}/model.pt``). Needs torch, numpy, pandas, xarray, zarr.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from benchio import emit_json  # bench/, the folder of this script

from neds.data.dataset import load_sessions
from neds.stages import launch_training
from neds.train import evaluate, load_checkpoint, load_model


def settings(path: Path, device: str, epochs: int | None) -> tuple[dict, dict, list[str]]:
    """The model and training settings recorded in a checkpoint, the device (and epochs) replaced."""
    ckpt = load_checkpoint(path)
    train_config = dict(ckpt["train_config"], device=device, progress=False)
    if epochs:
        train_config.update(epochs=epochs, val_every=1)
    return dict(ckpt["model_config"]), train_config, list(ckpt["vocab"]["eids"])


def scores(model_path: Path, store: Path, device: str) -> dict:
    model, _ = load_model(model_path, map_location=device)
    return evaluate(model.to(device), load_sessions([store]), "test", torch.device(device))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished default run's results/ folder")
    parser.add_argument("--heldout", required=True, help="the held-out session to fine-tune on")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=None, help="override both stages' epochs (a quick try)")
    parser.add_argument(
        "--work", default=str(Path(tempfile.gettempdir()) / "neds_gpu_stages"), help="where the two models are trained"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    run, work = Path(args.run), Path(args.work)
    res = {
        "device": args.device,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
    }

    model_cfg, train_cfg, eids = settings(run / "models/pretrain/model.pt", args.device, args.epochs)
    stores = [run / "binned" / f"{eid}.zarr" for eid in eids]
    t0 = time.perf_counter()
    pre = launch_training("pretrain", stores, work / "pretrain", model_cfg, train_cfg)
    res["pretrain"] = {
        "wall_s": time.perf_counter() - t0,
        "sessions": len(eids),
        "epochs": train_cfg["epochs"],
        "batch_size": train_cfg["batch_size"],
        "trials_per_second": pre["trials_per_second"],
        "best_validation": {k: v for k, v in (pre["best_val"] or {}).items() if k.startswith("val_")},
    }

    ft_model = run / "models/finetune" / args.heldout / "model.pt"
    model_cfg, train_cfg, _ = settings(ft_model, args.device, args.epochs)
    store = run / "binned" / f"{args.heldout}.zarr"
    t0 = time.perf_counter()
    ft = launch_training(
        "finetune", [store], work / "finetune", model_cfg, train_cfg, pretrained=work / "pretrain/model.pt"
    )
    res["finetune"] = {
        "wall_s": time.perf_counter() - t0,
        "epochs": train_cfg["epochs"],
        "batch_size": train_cfg["batch_size"],
        "trials_per_second": ft["trials_per_second"],
    }
    res["test_metrics"] = {
        "this_device": scores(work / "finetune/model.pt", store, args.device),
        "cpu_run": scores(ft_model, store, args.device),
    }
    res["cuda_max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    emit_json(res, args.out)


if __name__ == "__main__":
    main()
