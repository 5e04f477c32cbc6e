"""The generated results page (neds.docs): rendered from a tiny fake results folder."""

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from neds.docs import (
    EXPERIMENT_TARGETS,
    config_file_names,
    config_hash,
    experiment_tables,
    git_stamp,
    main,
    render_results_page,
    resolve_config,
)

REPO = Path(__file__).resolve().parents[1]
DATE = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc)


def _tsv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(str(c) for c in r) for r in [header, *rows]) + "\n")


@pytest.fixture
def results(tmp_path):
    """A results folder with the default run's tables and one experiment (seeds)."""
    res = tmp_path / "results"
    (res / "tables").mkdir(parents=True)
    (res / "summary.md").write_text(
        "# NEDS evaluation\n\nHeld-out sessions, test trials.\n\n"
        "| method | sessions | bps_unit_mean |\n|---|---|---|\n| neds_finetuned | 2 | 0.208 ± 0.011 |\n"
    )
    summary_cols = [
        "method",
        "n_sessions",
        "bps_unit_mean_mean",
        "bps_unit_mean_sem",
        "psth_r2_mean",
        "psth_r2_sem",
        "choice_balanced_acc_mean",
        "choice_balanced_acc_sem",
        "not_scored",
    ]
    _tsv(
        res / "tables" / "summary.tsv",
        summary_cols,
        [
            ["linear", 2, 0.05, 0.02, 0.3, 0.1, 0.6, 0.01, "s1: block_acc: block is constant"],
            ["neds_finetuned", 2, 0.2, 0.01, 0.5, "", 0.75, 0.02, ""],
        ],
    )
    _tsv(
        res / "tables" / "pretraining_gain.tsv",
        ["metric", "neds_finetuned", "neds_scratch", "gain_percent", "n_sessions"],
        [["bps_unit_mean", 0.208, 0.2, 4.0, 2], ["block_acc", 0.5, 0.5, "", 0]],
    )
    probe = {
        "target": "pretrain",
        "n_units": 351,
        "chance": 0.376,
        "regions_left_out": {},
        "results": {
            k: {"accuracy": 0.5, "accuracy_sem": 0.01, "balanced_accuracy": 0.4, "balanced_accuracy_sem": 0.02}
            for k in ("input", "output", "both", "mean_rate", "psth")
        },
    }
    (res / "probing" / "pretrain").mkdir(parents=True)
    (res / "probing" / "pretrain" / "probe.json").write_text(json.dumps(probe))
    (res / "figures").mkdir()
    for name in ("methods_encoding.png", "experiment_seeds.png"):
        (res / "figures" / name).write_bytes(b"")
    _tsv(
        res / "experiments" / "seeds" / "summary.tsv",
        ["variant", "method", "n_sessions", "bps_unit_mean_mean", "bps_unit_mean_sem"],
        [["seed_42", "neds_finetuned", 2, 0.208, 0.011], ["seed_43", "neds_scratch", 2, 0.17, 0.03]],
    )
    return res


def test_page_from_tables(results):
    page = render_results_page(results, ["config/config.yaml"], config={"a": 1}, commit="abc1234", date=DATE)
    head = page.split("## ")[0]
    assert "- commit: `abc1234`" in head and "- generated: 2026-01-02 03:04 UTC" in head
    assert f"`config/config.yaml`; resolved configuration sha256 `{config_hash({'a': 1})}`" in head
    assert "| method | sessions | bps_unit_mean |" in page and "| neds_finetuned | 2 | 0.200 ± 0.010 |" in page
    assert page.index("| neds_finetuned | 2 | 0.200") < page.index("| linear | 2 | 0.050")  # methods in table order
    assert "- linear: s1: block_acc: block is constant" in page
    assert "| method | sessions | psth_r2 | choice_balanced_acc |" in page
    assert "| neds_finetuned | 2 | 0.500 | 0.750 ± 0.020 |" in page  # a single-valued s.e.m. is left out
    assert "| bps_unit_mean | 0.208 | 0.200 | +4.0 | 2 |" in page and "| block_acc | 0.500 | 0.500 | – | 0 |" in page
    assert "| pretraining sessions (pretrained model) | 351 | 0.376 | 0.500 ± 0.010 |" in page
    assert "[methods_encoding.png](../results/figures/methods_encoding.png)" in page
    assert "| seed_42 | neds_finetuned | 2 | 0.208 ± 0.011 |" in page
    assert "[experiment_seeds.png](../results/figures/experiment_seeds.png)" in page


def test_experiment_with_many_variants_shows_its_comparison_not_its_summary(results):
    exp = results / "experiments" / "loss_balance"
    _tsv(
        exp / "summary.tsv",
        ["variant", "method", "split", "n_sessions"],
        [["null_seed_42", "neds_finetuned", "val", 2]],
    )
    page = render_results_page(results, [], config_digest="0" * 12, commit="x", date=DATE)
    section = page.split("### `loss_balance`")[1].split("### ")[0]
    assert "null_seed_42" not in section and "[summary.tsv](../results/experiments/loss_balance/summary.tsv)" in section
    assert (
        "`results/experiments/loss_balance/comparison.md`: `snakemake loss_balance --cores 2`" in page.split("## ")[0]
    )
    (exp / "comparison.md").write_text("# Balance comparison\n\n| balance | score |\n|---|---|\n| null | 0.6 |\n")
    section = render_results_page(results, [], config_digest="0" * 12, commit="x", date=DATE).split(
        "### `loss_balance`"
    )[1]
    assert "| null | 0.6 |" in section and "# Balance comparison" not in section


def test_missing_parts_are_reported_with_their_command(results):
    page = render_results_page(results, ["config/config.yaml"], config_digest="0" * 12, commit="abc1234", date=DATE)
    head = page.split("## ")[0]
    assert "Not built yet" in head
    for name in EXPERIMENT_TARGETS:
        if name != "seeds":
            assert f"- `{name}`: `snakemake {name} --cores 2`, then `snakemake docs --cores 1`" in head
    assert "- `seeds`" not in head
    assert "`results/probing/finetune/probe.json` (the main run): `snakemake --cores 2`" in head
    # without the TSV tables, summary.md stands in (its title dropped), and the TSV is reported missing
    (results / "tables" / "summary.tsv").unlink()
    page = render_results_page(results, [], config_digest="0" * 12, commit="x", date=DATE)
    assert "# NEDS evaluation" not in page and "| neds_finetuned | 2 | 0.208 ± 0.011 |" in page
    assert "`results/tables/summary.tsv` (the main run): `snakemake --cores 2`" in page.split("## ")[0]
    # an empty folder: everything missing, nothing fails
    empty = render_results_page(results.parent / "nothing", [], config_digest="0" * 12, commit="x", date=DATE)
    assert "`results/tables/summary.tsv` (the main run)" in empty and "- none yet" in empty


def test_another_configuration_names_its_files_in_every_command(results):
    files = ["config/config.yaml", "config/larger_simulation.yaml"]
    page = render_results_page(results, files, config_digest="0" * 12, commit="x", date=DATE)
    head = page.split("## ")[0]
    args = "--configfile config/config.yaml config/larger_simulation.yaml"
    assert f"- `scaling`: `snakemake scaling --cores 2 {args}`, then `snakemake docs --cores 1 {args}`" in head
    assert f"`results/probing/finetune/probe.json` (the main run): `snakemake --cores 2 {args}`" in head
    assert "--cores 2`" not in head  # no command without the files


def test_an_experiments_figures_are_listed_with_it(results):
    for name in ("gain_scaling.png", "experiment_scaling.png", "peers_decoding.png"):
        (results / "figures" / name).write_bytes(b"")
    _tsv(results / "experiments" / "scaling" / "summary.tsv", ["variant", "method", "n_sessions"], [["x", "y", 1]])
    page = render_results_page(results, [], config_digest="0" * 12, commit="x", date=DATE)
    figures = page.split("## Figures")[1].split("## ")[0]
    assert "methods_encoding.png" in figures and "gain_scaling" not in figures and "peers_decoding" not in figures
    scaling = page.split("### `scaling`")[1].split("### ")[0]
    assert "[gain_scaling.png](../results/figures/gain_scaling.png)" in scaling
    assert "[experiment_scaling.png](../results/figures/experiment_scaling.png)" in scaling
    assert "`results/experiments/scaling/gain.md`: `snakemake scaling --cores 2`" in page.split("## ")[0]


def _git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
    )


def test_git_stamp(tmp_path):
    assert git_stamp(tmp_path) == "unknown (not a git checkout)"
    _git(tmp_path, "init", "-q")
    (tmp_path / "docs").mkdir()
    for name in ("a.txt", "docs/results.md"):
        (tmp_path / name).write_text("1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "x")
    short = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert git_stamp(tmp_path) == short
    (tmp_path / "docs" / "results.md").write_text("2\n")  # the page itself does not make the tree modified
    (tmp_path / "untracked.txt").write_text("x\n")
    assert git_stamp(tmp_path) == short
    (tmp_path / "a.txt").write_text("2\n")
    assert git_stamp(tmp_path) == f"{short} (modified)"
    _git(tmp_path, "commit", "-q", "-am", "y")
    short = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / "docs" / "results_other.md").write_text("x\n")
    _git(tmp_path, "add", "docs/results_other.md")
    assert git_stamp(tmp_path) == f"{short} (modified)"  # another page is not ignored by default
    assert git_stamp(tmp_path, ignore=("docs/results_other.md",)) == short


def test_resolved_config_and_command_line(results, tmp_path):
    config = resolve_config([REPO / "config" / "config.yaml"])
    assert config["model"]["hidden"] == 64 and "bf16" in config["training"]  # a schema default filled in
    assert config_hash(config) == config_hash(resolve_config([REPO / "config" / "config.yaml"]))
    out = tmp_path / "docs" / "results.md"
    main(
        [
            "--results",
            str(results),
            "--out",
            str(out),
            "--configfile",
            "config/config.yaml",
            "--config-hash",
            "f" * 12,
            "--repo",
            str(tmp_path),
        ]
    )
    text = out.read_text()
    assert "sha256 `ffffffffffff`" in text and "- commit: `unknown (not a git checkout)`" in text


def test_config_files_in_merge_order_and_existing_tables(results, tmp_path):
    # Snakemake lists the --configfile files first and the Snakefile's own last; they merge the other way
    own, cli = tmp_path / "config" / "config.yaml", tmp_path / "config" / "paper.yaml"
    assert config_file_names([cli, own], [cli], cwd=tmp_path) == ["config/config.yaml", "config/paper.yaml"]
    assert config_file_names([own, own], [own], cwd=tmp_path) == ["config/config.yaml"]
    assert config_file_names([own], [], cwd=tmp_path / "elsewhere") == [own.resolve().as_posix()]
    assert experiment_tables(results, existing=True) == [(results / "experiments" / "seeds" / "summary.tsv").as_posix()]
    # every summary.tsv, best.json (sweep), the comparison pages (peers, loss balances, recipes), the
    # gain pages (scaling, finetune_trials) and table1.md
    assert len(experiment_tables(results)) == len(EXPERIMENT_TARGETS) + 6
    assert (results / "experiments" / "peers" / "comparison.md").as_posix() in experiment_tables(results)
