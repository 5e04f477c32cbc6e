"""The generated results page, ``docs/results.md`` (or the configuration's ``docs.page``): rendered
from the tables a finished run wrote.

Nothing on that page is typed by hand. :func:`render_results_page` reads a results folder (the
default run's ``summary.md`` and ``tables/*.tsv``, the probing results ``probing/*/probe.json``,
and each experiment's ``experiments/<name>/summary.tsv`` and ``experiments/table1.md`` when they
exist), links the figures (outputs, not committed), says which experiments have not been run and
the command that runs them, and stamps the page with the git commit, the date and the
configuration it came from. The workflow's rule ``docs`` (``workflow/rules/docs.smk``) calls it;
so can anyone, on any results folder::

    python -m neds.docs --results results --out docs/results.md --configfile config/config.yaml

This module does not import torch (the workflow imports it at start-up).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neds.evaluate.tables import format_mean_sem, markdown_table
from neds.experiments import EXPERIMENTS
from neds.vocab import (
    BEHAVIOURS,
    DECODING_METRICS,
    ENCODING_METRICS,
    FINETUNE,
    HEADLINE_METRICS,
    HELDOUT_ROLE,
    METHOD_ORDER,
    PRETRAIN,
    PRETRAIN_ROLE,
)

__all__ = [
    "render_results_page",
    "write_results_page",
    "git_stamp",
    "config_hash",
    "resolve_config",
    "experiment_tables",
    "config_file_names",
    "EXPERIMENT_TARGETS",
    "PAGE",
]

PAGE = "docs/results.md"
"""Where the workflow writes the page by default (``docs.page``), relative to the repository root."""
DEFAULT_CONFIG = "config/config.yaml"
"""The workflow's own configuration file (its ``configfile:``)."""

EXPERIMENT_TARGETS = (*EXPERIMENTS, "table1")
"""The experiment targets whose tables the page shows when they have been built."""

_WHAT = {
    "seeds": "Fine-tuned and from-scratch NEDS at each of `experiments.seeds`",
    "ablation_masking": "Pretraining and fine-tuning with all five masking schemes, without cross-modal, "
    "and without cross-modal and within-modality masking",
    "model_size": "Pretraining and fine-tuning at each of `experiments.model_sizes`",
    "scaling": "Pretraining on the first k usable pretraining sessions (`experiments.scaling_sessions`), then "
    "fine-tuning, at each of `experiments.seeds`, against the model trained from scratch at the same seeds",
    "finetune_trials": "Fine-tuned and from-scratch NEDS on a fraction of each held-out session's training trials "
    "(`experiments.finetune_fractions`), at each of `experiments.seeds`",
    "peers": "NEDS, POYO+ and NDT2, each pretrained on the same sessions, then fine-tuned at each of "
    "`experiments.seeds` on every held-out session: the paper's comparison with other large-scale models "
    "([peers.md](peers.md))",
    "loss_balance": "Each balance of the modalities' losses (`training.loss`) of `experiments.loss_balances` at "
    "each of `experiments.seeds`, "
    "pretrained and fine-tuned with it, chosen on the validation trials and reported on the test trials "
    "([design.md](design.md#balancing-the-modalities))",
    "finetune_recipe": "Each fine-tuning recipe of `experiments.finetune_recipes` at each of `experiments.seeds`, "
    "beside the model trained from scratch at the same seeds, chosen on the validation trials and compared with "
    "scratch on the test trials ([design.md](design.md#the-fine-tuning-recipe))",
    "sweep": "Random configurations trained from scratch, selected on the validation trials; `best` is retrained "
    "with the chosen settings and scored on the test trials",
    "table1": "Encoding from each behaviour alone against all behaviours (the paper's Table 1), from the main evaluation",
}
_FEATURES = (
    ("input", "input embedding"),
    ("output", "output embedding"),
    ("both", "both"),
    ("mean_rate", "mean rate"),
    ("psth", "PSTH"),
)
_PROBE_TARGETS = (
    (PRETRAIN.name, "pretraining sessions (pretrained model)"),
    (FINETUNE.name, "held-out sessions (fine-tuned models)"),
)


@dataclass(frozen=True)
class _Commands:
    """The commands the page names (to build what is missing), for a run of ``config_files``: the
    workflow's own ``config/config.yaml`` alone needs no ``--configfile``; any other list is
    passed whole, in merge order."""

    config_files: tuple[str, ...] = ()

    def _args(self) -> str:
        if not self.config_files or list(self.config_files) == [DEFAULT_CONFIG]:
            return ""
        return " --configfile " + " ".join(self.config_files)

    def run(self, target: str = "") -> str:
        return f"snakemake{' ' + target if target else ''} --cores 2{self._args()}"

    def docs(self) -> str:
        return f"snakemake docs --cores 1{self._args()}"


# ------------------------------------------------------------------------------------ the stamp
def git_stamp(repo_dir: str | Path = ".", ignore: Iterable[str] = (PAGE,)) -> str:
    """The short commit of ``repo_dir`` (``git rev-parse --short HEAD``), with " (modified)" when
    a tracked file differs from it. Paths in ``ignore`` (the page being written) do not count.
    "unknown (not a git checkout)" when git cannot say."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    skip = {Path(p).as_posix() for p in ignore}
    changed = [line[3:].split(" -> ")[-1].strip('"') for line in status if line.strip()]
    return commit + (" (modified)" if any(p not in skip for p in changed) else "")


def config_hash(config: dict[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the resolved configuration (keys sorted, as JSON)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resolve_config(config_files: Sequence[str | Path]) -> dict[str, Any]:
    """The configuration the workflow would run with: the files merged in order (later keys win,
    nested mappings merged) and completed with the schema's defaults (:func:`neds.config.validate_config`)."""
    import yaml

    from neds.config import validate_config

    def merge(base: dict, new: dict) -> dict:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    config: dict[str, Any] = {}
    for path in config_files:
        merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return validate_config(config)


# ------------------------------------------------------------------------------------ reading
def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(mean: Any, sem: Any = None, digits: int = 3) -> str:
    """A cell as every table of the package writes it (:func:`neds.evaluate.tables.format_mean_sem`)."""
    return format_mean_sem(_num(mean), _num(sem), digits)


def _cell(row: dict[str, str], metric: str) -> str:
    return _fmt(row.get(f"{metric}_mean"), row.get(f"{metric}_sem"))


def _demote(markdown: str, drop_title: bool = True) -> list[str]:
    """A generated Markdown file's lines, its first-level title dropped and its headings moved
    down two levels, so that it sits inside a section of the page."""
    lines = markdown.strip("\n").splitlines()
    if drop_title and lines and lines[0].startswith("# "):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    return ["##" + line if line.startswith("#") else line for line in lines]


def _metric_columns(rows: list[dict[str, str]], metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if rows and f"{m}_mean" in rows[0] and any(r[f"{m}_mean"] for r in rows)]


def _selects_best(name: str) -> bool:
    """Whether the experiment target ``name`` writes a best.json (``table1`` is no registry entry)."""
    return name in EXPERIMENTS and EXPERIMENTS[name].selects_best


def experiment_tables(results_dir: str | Path = "results", existing: bool = False) -> list[str]:
    """The experiment tables the page shows: each experiment's summary.tsv (and best.json, for an
    experiment that selects a best variant), and table1.md; with ``existing``, only those already built."""
    exp = Path(results_dir) / "experiments"
    paths = [
        p
        for name in EXPERIMENTS
        for p in (exp / name / "summary.tsv", *([exp / name / "best.json"] if _selects_best(name) else []))
    ]
    paths += [p for name in EXPERIMENTS for p in _extra_pages(Path(results_dir), name)]
    paths.append(exp / "table1.md")
    return [p.as_posix() for p in paths if not existing or p.exists()]


def _extra_pages(results: Path, name: str) -> list[Path]:
    """The Markdown pages among an experiment's extra targets (e.g. the peers' comparison), under
    ``results`` (the targets are named under the workflow's ``results/``)."""
    pages = [Path(t) for t in EXPERIMENTS[name].extra_targets if t.endswith(".md")]
    return [results / p.relative_to("results") if p.parts[0] == "results" else p for p in pages]


def config_file_names(
    configfiles: Iterable[str | Path], cli_configfiles: Iterable[str | Path] = (), cwd: str | Path | None = None
) -> list[str]:
    """A run's config files in merge order, each once: the workflow's own (``configfile:``), then
    those given with ``--configfile`` (Snakemake's ``workflow.configfiles`` and
    ``workflow.overwrite_configfiles``), relative to ``cwd`` (default: the working directory)
    where they lie below it."""
    base = Path(cwd or Path.cwd()).resolve()
    cli = [Path(f).resolve() for f in cli_configfiles]
    ordered = [p for p in (Path(f).resolve() for f in configfiles) if p not in cli] + cli
    names = []
    for path in dict.fromkeys(ordered):
        try:
            path = path.relative_to(base)
        except ValueError:
            pass
        names.append(path.as_posix())
    return names


# ------------------------------------------------------------------------------------ sections
def _sessions(results: Path) -> list[str]:
    path = results / "binned" / "sessions.tsv"
    if not path.exists():
        return []
    rows = _read_tsv(path)
    parts = []
    for role, name in ((PRETRAIN_ROLE, "pretraining"), (HELDOUT_ROLE, "held-out")):
        mine = [r for r in rows if r.get("role") == role]
        usable = sum(r.get("usable", "").strip().lower() == "true" for r in mine)
        parts.append(f"{len(mine)} {name} sessions ({usable} usable)")
    return [f"Sessions: {', '.join(parts)}; reasons for any unusable one are in `results/binned/sessions.tsv`.", ""]


def _default_run(results: Path, missing: list[str], cmd: _Commands) -> list[str]:
    """The main run's tables: the headline metrics, every other metric, the pretraining gain.
    From ``tables/summary.tsv`` and ``tables/pretraining_gain.tsv``; ``summary.md`` (the same
    headline table) stands in where the TSV files are missing."""
    out = ["## The main run: held-out sessions, test trials", ""]
    summary_tsv, summary_md = results / "tables" / "summary.tsv", results / "summary.md"
    if summary_tsv.exists():
        rows = _ordered(_read_tsv(summary_tsv))
        head = _metric_columns(rows, HEADLINE_METRICS)
        out += [
            "Mean ± s.e.m. over the held-out sessions where the metric was scored "
            "(`results/tables/summary.tsv`, as in `results/summary.md`; definitions: "
            "[method.md](method.md#metric-conventions)).",
            "",
        ]
        out += markdown_table(
            ["method", "sessions", *head],
            ([r["method"], r.get("n_sessions", "")] + [_cell(r, c) for c in head] for r in rows),
        )
        notes = [f"- {r['method']}: {r['not_scored']}" for r in rows if r.get("not_scored")]
        if notes:
            out += [
                "",
                "Not scored (a constant target says nothing about decoding; these sessions are left out of "
                "that metric's mean):",
                "",
                *notes,
            ]
        out.append("")
        extra = [m for m in (*ENCODING_METRICS, *DECODING_METRICS) if m not in HEADLINE_METRICS]
        cols = _metric_columns(rows, (*extra, *(f"bps_from_{b}" for b in BEHAVIOURS)))
        if cols:
            out += [
                "### Every other metric",
                "",
                "`bps_from_<behaviour>`: encoding from that behaviour alone (the paper's Table 1).",
                "",
            ]
            out += markdown_table(
                ["method", "sessions", *cols],
                ([r["method"], r.get("n_sessions", "")] + [_cell(r, c) for c in cols] for r in rows),
            )
            out.append("")
    elif summary_md.exists():
        out += _demote(summary_md.read_text()) + [""]
    if not summary_tsv.exists():
        missing.append(f"`results/tables/summary.tsv` (the main run): `{cmd.run()}`")
        if not summary_md.exists():
            out += [f"Not built yet: run `{cmd.run()}`, then `{cmd.docs()}`.", ""]
    gain_tsv = results / "tables" / "pretraining_gain.tsv"
    if gain_tsv.exists():
        rows = _read_tsv(gain_tsv)
        if rows:
            ft, sc = [k for k in rows[0] if k not in ("metric", "gain_percent", "n_sessions")][:2]
            out += [
                "### Pretraining gain",
                "",
                f"`{ft}` against `{sc}`: 100 · (fine-tuned - scratch) / |scratch| of "
                "their means over the sessions where both were scored (`results/tables/pretraining_gain.tsv`).",
                "",
            ]
            out += markdown_table(
                ["metric", ft, sc, "gain (%)", "sessions"],
                (
                    [
                        r["metric"],
                        _fmt(r[ft]),
                        _fmt(r[sc]),
                        f"{_num(r['gain_percent']):+.1f}" if not math.isnan(_num(r["gain_percent"])) else "–",
                        r.get("n_sessions", ""),
                    ]
                    for r in rows
                ),
            )
            out.append("")
    else:
        missing.append(f"`results/tables/pretraining_gain.tsv` (the main run): `{cmd.run()}`")
    return out


def _ordered(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(rows, key=lambda r: order.get(r.get("method", ""), len(order)))


def _probing(results: Path, missing: list[str], cmd: _Commands) -> list[str]:
    out = [
        "## Brain-region probing",
        "",
        "Linear SVM on each unit's embedding, stratified 5-fold cross-validation; accuracy ± s.e.m. over "
        "folds (`results/probing/<target>/probe.json`). Chance: the majority region.",
        "",
    ]
    acc_rows, bacc_rows = [], []
    for target, label in _PROBE_TARGETS:
        path = results / "probing" / target / "probe.json"
        if not path.exists():
            missing.append(f"`results/probing/{target}/probe.json` (the main run): `{cmd.run()}`")
            continue
        probe = json.loads(path.read_text())
        res = probe.get("results") or {}
        if not res:
            out += [f"- {label}: skipped ({probe.get('skipped', 'no results')}).", ""]
            continue
        head = [label, str(probe.get("n_units", "")), _fmt(probe.get("chance"))]
        acc_rows.append(
            head + [_fmt(res[k]["accuracy"], res[k].get("accuracy_sem")) if k in res else "–" for k, _ in _FEATURES]
        )
        bacc_rows.append(
            head[:2]
            + [
                _fmt(res[k]["balanced_accuracy"], res[k].get("balanced_accuracy_sem")) if k in res else "–"
                for k, _ in _FEATURES
            ]
        )
        left_out = probe.get("regions_left_out") or {}
        if left_out:
            out += [f"- {label}: regions left out: " + "; ".join(f"{r} ({why})" for r, why in left_out.items()), ""]
    if acc_rows:
        out += (
            ["Accuracy:", ""]
            + markdown_table(["units of", "units", "chance", *(n for _, n in _FEATURES)], acc_rows)
            + [""]
        )
        out += ["Balanced accuracy (chance: 1 / number of regions):", ""]
        out += markdown_table(["units of", "units", *(n for _, n in _FEATURES)], bacc_rows) + [""]
    return out


def _experiment_figures(name: str) -> list[str]:
    """The PNG figures an experiment writes: ``experiment_<name>.png`` and those among its extra targets."""
    extra = [Path(t).name for t in EXPERIMENTS[name].extra_targets if t.endswith(".png")] if name in EXPERIMENTS else []
    return [f"experiment_{name}.png", *extra]


def _figures(results: Path, link: str) -> list[str]:
    figures = sorted(p.name for p in (results / "figures").glob("*.png")) if (results / "figures").is_dir() else []
    theirs = {f for name in EXPERIMENTS for f in _experiment_figures(name)}
    main = [f for f in figures if f not in theirs and not f.startswith("experiment_")]
    out = [
        "## Figures",
        "",
        "Outputs of the run, not committed: the links resolve in a checkout where the run has been made "
        "(SVG beside each PNG; `snakemake --report results/report.html` gathers them with captions).",
        "",
    ]
    out += [f"- [{name}]({link}/figures/{name})" for name in main] or ["- none yet"]
    return out + [""]


def _experiment(results: Path, name: str, link: str, missing: list[str], cmd: _Commands) -> list[str]:
    info = EXPERIMENTS.get(name) if isinstance(EXPERIMENTS, dict) else None
    out = [f"### `{name}`", "", (_WHAT.get(name) or getattr(info, "title", name)) + ".", ""]
    run = f"`{cmd.run(name)}`, then `{cmd.docs()}`"
    if name == "table1":
        path = results / "experiments" / "table1.md"
        if not path.exists():
            missing.append(f"`{name}`: {run}")
            return out + [f"Not run yet: {run}.", ""]
        return out + _demote(path.read_text()) + [""]
    path = results / "experiments" / name / "summary.tsv"
    if not path.exists():
        missing.append(f"`{name}`: {run}")
        return out + [f"Not run yet: {run}.", ""]
    rows = _read_tsv(path)
    figures = ", ".join(f"[{f}]({link}/figures/{f})" for f in _experiment_figures(name))
    if info is not None and not info.summary_on_page:
        out += [
            f"Every variant's scores: [summary.tsv]({link}/experiments/{name}/summary.tsv); figures: {figures}.",
            "",
        ]
        return out + _pages(results, name, run, missing)
    cols = _metric_columns(rows, HEADLINE_METRICS)
    if _selects_best(name):
        out += [
            "The candidates are scored on the validation trials, the variant retrained with the chosen "
            "settings on the test trials.",
            "",
        ]
    splits = len({r.get("split", "") for r in rows}) > 1  # scored on several splits: say which row is which
    out += markdown_table(
        ["variant", "method", *(["split"] if splits else []), "sessions", *cols],
        (
            [
                r.get("variant", ""),
                r.get("method", ""),
                *([r.get("split", "")] if splits else []),
                r.get("n_sessions", ""),
            ]
            + [_fmt(r[f"{c}_mean"], r[f"{c}_sem"]) for c in cols]
            for r in rows
        ),
    )
    out.append("")
    best = results / "experiments" / name / "best.json"
    if _selects_best(name) and best.exists():
        chosen = json.loads(best.read_text())
        out += [
            f"Chosen: `{chosen.get('variant')}` (mean validation score {_fmt(chosen.get('val_score'))}), settings "
            f"`{json.dumps(chosen.get('settings'), sort_keys=True)}`.",
            "",
        ]
    out += [f"Figures: {figures}", ""]
    return out + _pages(results, name, run, missing)


def _pages(results: Path, name: str, run: str, missing: list[str]) -> list[str]:
    """An experiment's extra Markdown pages, demoted into the results page (each one not built
    yet is added to ``missing`` with the command ``run`` that builds it)."""
    out: list[str] = []
    for page in _extra_pages(results, name):
        if page.exists():
            out += _demote(page.read_text()) + [""]
        else:
            missing.append(f"`{page.relative_to(results.parent).as_posix()}`: {run}")
    return out


# ------------------------------------------------------------------------------------ the page
def render_results_page(
    results_dir: str | Path = "results",
    config_files: Sequence[str | Path] = ("config/config.yaml",),
    *,
    config: dict[str, Any] | None = None,
    config_digest: str | None = None,
    commit: str | None = None,
    repo_dir: str | Path = ".",
    date: dt.datetime | None = None,
    results_link: str = "../results",
    page: str | Path = PAGE,
) -> str:
    """The Markdown of the results page.

    Parameters
    ----------
    results_dir : the run's results folder (read only)
    config_files : the configuration files of the run, in the order they were merged
    config : the resolved configuration (its hash is stamped); default: resolved from ``config_files``
    config_digest : the hash to stamp instead (as from :func:`config_hash`)
    commit : the stamp's commit; default :func:`git_stamp` of ``repo_dir``
    date : the stamp's time (default: now, UTC)
    results_link : the results folder as a link from the page (``docs/`` -> ``../results``)
    page : where the page is written, relative to ``repo_dir`` (a change to it does not mark the
        stamped commit modified)

    Missing tables are not an error: the page says which are missing and the command that makes them.
    """
    results = Path(results_dir)
    if config_digest is None:
        config_digest = config_hash(config if config is not None else resolve_config(config_files))
    commit = commit if commit is not None else git_stamp(repo_dir, ignore=(PAGE, page))
    cmd = _Commands(tuple(Path(f).as_posix() for f in config_files))
    date = date or dt.datetime.now(dt.timezone.utc)
    files = ", ".join(f"`{Path(f).as_posix()}`" for f in config_files) or "none (schema defaults)"
    missing: list[str] = []

    body = (
        _sessions(results)
        + _default_run(results, missing, cmd)
        + _probing(results, missing, cmd)
        + _figures(results, results_link)
    )
    body += [
        "## Experiments",
        "",
        "What each experiment varies and how to run it: [experiments.md](experiments.md). Each table is "
        "mean ± s.e.m. over the held-out sessions, seed `training.seed` unless the variant sets it.",
        "",
    ]
    for name in EXPERIMENT_TARGETS:
        body += _experiment(results, name, results_link, missing, cmd)

    head = [
        "# Results",
        "",
        "<!-- Generated by `snakemake docs` (neds.docs.render_results_page) from the run's own tables; "
        "do not edit by hand: rerun it. -->",
        "",
        f"- commit: `{commit}`",
        f"- generated: {date.astimezone(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- configuration: {files}; resolved configuration sha256 `{config_digest}`",
        "",
    ]
    if missing:
        head += ["Not built yet (each with the command that builds it):", ""] + [f"- {m}" for m in missing] + [""]
    return "\n".join(head + body).rstrip("\n") + "\n"


def write_results_page(out: str | Path = PAGE, results_dir: str | Path = "results", **kwargs: Any) -> Path:
    """Render the page (:func:`render_results_page`) and write it to ``out`` atomically."""
    out = Path(out)
    text = render_results_page(results_dir, **{"page": out.as_posix(), **kwargs})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m neds.docs", description="Write the results page from a results folder."
    )
    parser.add_argument("--results", default="results", help="the run's results folder (default: results)")
    parser.add_argument("--out", default=PAGE, help=f"the page to write (default: {PAGE})")
    parser.add_argument(
        "--configfile", nargs="*", default=["config/config.yaml"], help="the run's config files, in merge order"
    )
    parser.add_argument("--config-hash", default=None, help="stamp this hash instead of resolving the config files")
    parser.add_argument("--repo", default=".", help="the checkout whose commit is stamped (default: .)")
    parser.add_argument("--results-link", default="../results", help="the results folder as seen from the page")
    args = parser.parse_args(argv)
    out = write_results_page(
        args.out,
        args.results,
        config_files=args.configfile,
        config_digest=args.config_hash,
        repo_dir=args.repo,
        results_link=args.results_link,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
