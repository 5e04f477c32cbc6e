"""bwb_score: IBL BrainWideBench's own scorers on the exported predictions.

Runs in the benchmark's environment (workflow/envs/bwb.yaml), not the project's: it imports
ibl_bwb_eval and nothing from neds. Usage: python bwb_score.py PRED_DIR GT_DIR OUT_TSV
"""

import csv
import sys

try:
    from ibl_bwb_eval.scoring import ts1, ts2, ts3
except ImportError as exc:
    sys.exit(
        f"bwb_score needs ibl-bwb-eval ({exc}). Run it in its own environment: "
        "snakemake bwb_score --sw-deployment-method conda (workflow/envs/bwb.yaml), "
        "or put a Python with ibl-bwb-eval==0.1.0 first on PATH."
    )


def main(pred_dir: str, gt_dir: str, out: str) -> None:
    rows = []
    for suite, module in (("ts1", ts1), ("ts2", ts2), ("ts3", ts3)):
        raw = module.score_dir(pred_dir, gt_dir)
        for key, metrics in sorted(raw.items()):
            if suite == "ts3":
                label, seed = key
                task, recording = "ts3-unit_cosmos", ""
            else:
                label, task, recording, seed = key
            for metric, value in metrics.items():
                rows.append(
                    {
                        "suite": suite,
                        "label": label,
                        "task": task,
                        "recording_id": recording,
                        "seed": seed,
                        "metric": metric,
                        "value": value,
                    }
                )
    if not rows:
        sys.exit(f"no prediction under {pred_dir} could be scored against {gt_dir}")
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main(*sys.argv[1:4])
