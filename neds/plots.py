"""Figures of the evaluation, the pretraining gain, example predictions, probing and training.

Every ``plot_*`` function takes data objects (DataFrames, xarray datasets, dicts) or the paths
of the workflow's files, and returns a :class:`matplotlib.figure.Figure`; :func:`save_figure`
writes it as PNG (150 dpi) and SVG, atomically. Names, labels and colours of methods, regions,
stages and metrics come from :mod:`neds.vocab`; means ± s.e.m. from
:func:`neds.evaluate.tables.mean_sem`. Figures are built with ``Figure`` directly, not pyplot, so
nothing depends on a display or on pyplot's global figure list, and no style is set at import.

Conventions: spike counts are per bin, rates in Hz are count / bin width; wheel speed and whisker
motion energy are min-max scaled per session (dimensionless, [0, 1]); accuracies are fractions
of test trials; R² and bits per spike are dimensionless. Points are sessions unless said otherwise.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy.ndimage import gaussian_filter1d
from sklearn.decomposition import PCA

from neds.evaluate.metrics import r2_score
from neds.evaluate.tables import mean_sem
from neds.experiments import EXPERIMENT_TITLES
from neds.io.files import atomic_write
from neds.io.history import read_history
from neds.io.store import as_str, open_binned, verify_store
from neds.vocab import (
    DECODING,
    ENCODING,
    FINETUNE,
    METHOD_ORDER,
    METHODS,
    METRIC_LABELS,
    MODALITIES,
    NEDS_FINETUNED,
    NEDS_SCRATCH,
    ORACLE,
    PRETRAIN,
    REGIONS,
    SCRATCH,
    SELECTION_METRICS,
    STAGES,
)

__all__ = [
    "save_figure",
    "choose_example_unit",
    "plot_methods_encoding",
    "plot_methods_decoding",
    "plot_pretraining_gain",
    "plot_examples",
    "plot_probing",
    "plot_training_curves",
    "plot_experiment",
    "plot_data_gain",
]


STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "svg.fonttype": "none",  # text stays text in the SVG
    "svg.hashsalt": "neds",  # fixed element ids: the same figure gives the same SVG bytes
}
DPI = 150

MODALITY_COLOURS = dict(zip(MODALITIES, ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")))
OTHER_COLOUR = "#444444"  # a column that is not a method of neds.vocab (e.g. an experiment's variant)
FLOOR = -1.0  # bits per spike and R² below this are drawn on the axis edge as a down triangle
BLOCK_STYLE = {0: ("pLeft 0.2", "#2166ac"), 1: ("pLeft 0.5", "#888888"), 2: ("pLeft 0.8", "#b2182b")}
CHOICE_LABELS = {0: "choice −1", 1: "choice +1"}  # IBL choice values of classes 0 / 1
FEATURE_LABELS = {
    "input": "input\nembedding",
    "output": "output\nembedding",
    "both": "input +\noutput",
    "mean_rate": "mean rate",
    "psth": "PSTH",
}
SCORE_LABELS = {
    ENCODING.name: "validation bits per spike",
    DECODING.name: "validation score\n(mean of 4 decoding scores)",
}


def save_figure(fig: Figure, png: str | Path, svg: str | Path | None = None) -> None:
    """Write ``fig`` as PNG at 150 dpi and as SVG (by default beside the PNG, same stem), each
    atomically (:func:`neds.io.files.atomic_write`)."""
    png = Path(png)
    svg = Path(svg) if svg is not None else png.with_suffix(".svg")
    with mpl.rc_context(STYLE):
        atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
        # no timestamp: reproducible bytes
        atomic_write(svg, lambda tmp: fig.savefig(tmp, format="svg", metadata={"Date": None}))


def _table(table: pd.DataFrame | str | Path) -> pd.DataFrame:
    return table if isinstance(table, pd.DataFrame) else pd.read_csv(table, sep="\t")


def _methods(df: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """Methods (canonical order, then any others) with a value for at least one of ``metrics``."""
    cols = [m for m in metrics if m in df]
    has = df.loc[df[cols].notna().any(axis=1), "method"].unique() if cols else []
    return [m for m in METHOD_ORDER if m in has] + sorted(set(has) - set(METHOD_ORDER))


def _method_style(method: str) -> tuple[str, str]:
    """(axis label, colour) of a method of :data:`neds.vocab.METHODS`; any other column is
    labelled by its name."""
    m = METHODS.get(method)
    return (m.label, m.colour) if m is not None else (method, OTHER_COLOUR)


def _strip(ax, df: pd.DataFrame, metric: str, methods: list[str], floor: float | None, seed: int = 0) -> None:
    """One column per method: sessions as jittered points, mean ± s.e.m. (:func:`mean_sem`; no
    error bar for a single session) as a diamond with error bar."""
    rng = np.random.default_rng(seed)  # fixed jitter: the same table gives the same figure
    clipped = False
    for i, method in enumerate(methods):
        label, colour = _method_style(method)
        values = df.loc[df["method"] == method, metric].dropna().to_numpy(float)
        x = i - 0.1 + rng.uniform(-0.13, 0.13, values.size)  # points left of centre, the mean to the right
        low = values < floor if floor is not None else np.zeros(values.size, bool)
        ax.scatter(x[~low], values[~low], s=22, color=colour, alpha=0.7, edgecolor="white", linewidth=0.5, zorder=3)
        if low.any():
            clipped = True
            ax.scatter(x[low], np.full(low.sum(), floor), s=30, marker="v", color=colour, zorder=3)
        mean, sem, _ = mean_sem(values)
        if np.isfinite(mean) and (floor is None or mean >= floor):
            ax.errorbar(
                i + 0.22, mean, yerr=sem, fmt="D", markersize=5, color="black", capsize=3, linewidth=1.2, zorder=4
            )
    ax.set_xticks(range(len(methods)), [_method_style(m)[0] for m in methods])
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    if clipped:
        bottom, top = ax.get_ylim()
        ax.set_ylim(floor - 0.05 * (top - floor), top)
        ax.text(0.99, 0.01, f"▼ below {floor:g}", transform=ax.transAxes, ha="right", va="bottom", fontsize=7)


def _hline(ax, y: float, label: str, style: str = "--") -> None:
    """A horizontal reference line (chance, null, oracle), named in the axes' legend."""
    ax.axhline(y, color="0.4", linestyle=style, linewidth=1, zorder=1, label=label)
    ax.legend(loc="best", fontsize=7)


def _n_sessions(df: pd.DataFrame) -> int:
    return int(df["eid"].nunique())


def plot_methods_encoding(metrics: pd.DataFrame | str | Path) -> Figure:
    """Encoding bits per spike per method (the paper's Figure 2).

    Parameters
    ----------
    metrics : the per-session metrics table (``results/tables/metrics.tsv``) or its path; one row
        per (method, session) with ``bps_unit_mean`` and ``bps_pooled``.

    Two panels (per-unit mean, pooled); one point per held-out session, mean ± s.e.m. over
    sessions; 0 is the null model (each unit's mean rate), the dotted line the oracle's mean.
    """
    df = _table(metrics)
    panels = ("bps_unit_mean", "bps_pooled")
    methods = _methods(df, panels)
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(max(8.0, 1.05 * len(methods) * 2), 3.8), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, metric in zip(axes, panels):
            _strip(ax, df, metric, methods, FLOOR)
            _hline(ax, 0.0, "null (mean rate)", "-")
            oracle = df.loc[df["method"] == ORACLE, metric].dropna()
            if len(oracle):
                _hline(ax, float(oracle.mean()), "oracle mean", ":")
            ax.set_title(
                "per-unit bits per spike, mean over units"
                if metric == "bps_unit_mean"
                else "bits per spike pooled over units"
            )
        fig.suptitle(f"Encoding: test trials of {_n_sessions(df)} held-out session(s); mean ± s.e.m. over sessions")
    return fig


def plot_methods_decoding(metrics: pd.DataFrame | str | Path) -> Figure:
    """Decoding of choice, block, wheel speed and whisker motion energy per method (Figure 3).

    Four panels; one point per held-out session, mean ± s.e.m. Chance: 0.5 for choice, 1/3 for
    block (uniform over the three priors; the majority-class rate of a session can be higher),
    0 for R² (predicting the mean).
    """
    df = _table(metrics)
    panels = ("choice_acc", "block_acc", "wheel_r2", "whisker_r2")
    chance = {
        "choice_acc": (0.5, "chance 0.5"),
        "block_acc": (1 / 3, "chance 1/3"),
        "wheel_r2": (0.0, "mean predictor"),
        "whisker_r2": (0.0, "mean predictor"),
    }
    methods = _methods(df, panels)
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(max(12.0, 1.1 * len(methods) * 4), 3.8), layout="constrained")
        axes = fig.subplots(1, 4)
        for ax, metric in zip(axes, panels):
            is_acc = metric.endswith("_acc")
            _strip(ax, df, metric, methods, None if is_acc else FLOOR)
            _hline(ax, *chance[metric])
            if is_acc:
                ax.set_ylim(0, 1.02)
            ax.set_title(METRIC_LABELS[metric].split(" (")[0])
        fig.suptitle(f"Decoding: test trials of {_n_sessions(df)} held-out session(s); mean ± s.e.m. over sessions")
    return fig


def plot_pretraining_gain(
    metrics: pd.DataFrame | str | Path,
    gain: pd.DataFrame | str | Path,
    panels: Sequence[str] = SELECTION_METRICS,
    pretrained: str = NEDS_FINETUNED,
    scratch: str = NEDS_SCRATCH,
) -> Figure:
    """Pretrained then fine-tuned vs trained from scratch, one point per held-out session.

    Parameters
    ----------
    metrics : per-session metrics table (or path) with rows for ``pretrained`` and ``scratch``
    gain : the pretraining-gain table (``results/tables/pretraining_gain.tsv``: metric,
        gain_percent) whose value titles each panel
    panels : metrics, one panel each; points above the diagonal favour pretraining
    """
    df, gain = _table(metrics), _table(gain)
    wide = df[df["method"].isin([pretrained, scratch])].pivot_table(index="eid", columns="method", values=list(panels))
    gain_of = dict(zip(gain["metric"], gain["gain_percent"]))
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(2.8 * len(panels), 3.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        for ax, metric in zip(axes, panels):
            if (metric, pretrained) in wide and (metric, scratch) in wide:
                pair = wide[[(metric, scratch), (metric, pretrained)]].dropna()
                x, y = pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy()
            else:
                x = y = np.array([])
            ax.scatter(x, y, s=30, color=_method_style(pretrained)[1], edgecolor="white", linewidth=0.5, zorder=3)
            values = np.concatenate([x, y, [0.0, 1.0] if metric.endswith("_acc") else []])
            lo, hi = (values.min(), values.max()) if values.size else (0.0, 1.0)
            pad = 0.08 * (hi - lo or 1.0)
            lims = (lo - pad, hi + pad)
            ax.plot(lims, lims, color="0.5", linestyle="--", linewidth=1, zorder=1)
            ax.set_xlim(lims)
            ax.set_ylim(lims)
            ax.set_aspect("equal")
            g = gain_of.get(metric, np.nan)
            ax.set_title(
                f"{METRIC_LABELS.get(metric, metric)}\ngain {g:+.1f} %"
                if np.isfinite(g)
                else f"{METRIC_LABELS.get(metric, metric)}\ngain n/a",
                fontsize=9,
            )
            ax.set_xlabel("from scratch")
            ax.set_ylabel("pretrained + fine-tuned")
        fig.suptitle(
            f"Pretraining gain on {len(wide)} held-out session(s): above the diagonal, pretraining helps; "
            "gain = (mean fine-tuned − mean scratch) / |mean scratch|"
        )
    return fig


def choose_example_unit(counts: np.ndarray, unit_bps: np.ndarray) -> int:
    """The unit with the highest bits per spike among units at or above the median mean count.

    counts : (K, T, N) observed counts; unit_bps : (N,) per-unit bits per spike (NaN allowed).
    The rate filter keeps the example from being a near-silent unit whose bps is noise.
    """
    mean = counts.mean(axis=(0, 1))
    score = np.where(mean >= np.median(mean), np.nan_to_num(np.asarray(unit_bps, float), nan=-np.inf), -np.inf)
    return int(np.argmax(score))


def _example_trials(n_total: int, n: int) -> np.ndarray:
    """``n`` trial positions spread evenly over the test trials (deterministic)."""
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int))


def plot_examples(
    binned: xr.Dataset | str | Path,
    predictions: xr.Dataset | str | Path,
    unit: int | None = None,
    n_trials: int = 3,
    smooth_bins: float = 2.0,
) -> Figure:
    """Example predictions of one method on one held-out session's test trials.

    Parameters
    ----------
    binned : the session's binned store (``results/binned/{eid}.zarr``) or its dataset
    predictions : one method's predictions store (``results/evaluation/{eid}/predictions/
        neds_finetuned.zarr``): ``rate`` (trial, time, unit) expected counts per bin; ``wheel``,
        ``whisker`` (trial, time) if the method decodes; ``unit_bps`` (unit)
    unit : the unit to show; default :func:`choose_example_unit`
    n_trials : trials shown in panel c (spread evenly over the test trials)
    smooth_bins : Gaussian s.d., in bins, applied to both observed and predicted PSTHs (0: none)

    Panels: a) PSTH in Hz per choice (one line per block prior), observed vs predicted; b) the
    unit's single-trial counts, predicted counts and residual (trials sorted by choice, block);
    c) decoded wheel speed and whisker motion energy vs truth on ``n_trials`` test trials.
    """
    data = open_binned(binned) if not isinstance(binned, xr.Dataset) else binned
    pred = verify_store(predictions) if not isinstance(predictions, xr.Dataset) else predictions
    if "rate" not in pred:
        raise ValueError(
            f"predictions of {pred.attrs.get('method', '?')} have no 'rate'; pass an encoding method's store"
        )
    data = data.sel(trial=pred["trial"].values)
    time = data["time"].values  # (T,) s from stimulus onset
    dt = float(np.median(np.diff(time)))  # bin width, s
    counts = data["spikes"].values.astype(np.float64)  # (K, T, N)
    rate = pred["rate"].values.astype(np.float64)  # (K, T, N) expected counts per bin
    if unit is None:
        unit = choose_example_unit(counts, pred["unit_bps"].values if "unit_bps" in pred else np.zeros(counts.shape[2]))
    choice, block = data["choice"].values.astype(int), data["block"].values.astype(int)
    obs_u, pred_u = counts[:, :, unit], rate[:, :, unit]  # (K, T)
    smooth = (
        (lambda x: gaussian_filter1d(x, smooth_bins, axis=-1, mode="nearest")) if smooth_bins > 0 else (lambda x: x)
    )
    region = str(data["unit_region"].values[unit]) if "unit_region" in data.coords else "?"
    bps = float(pred["unit_bps"].values[unit]) if "unit_bps" in pred else np.nan
    method = pred.attrs.get("method", "predicted")
    extent = (time[0] - dt / 2, time[-1] + dt / 2)

    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(13, 11), layout="constrained")
        top, middle, bottom = fig.subfigures(3, 1, height_ratios=(1, 1.1, 1))
        # a) PSTH per choice, a line per block prior
        psth_axes = top.subplots(1, 2, sharey=True)
        style = [
            Line2D([], [], color="black", linewidth=1, label="observed"),
            Line2D([], [], color="black", linewidth=2.2, linestyle="--", label=f"predicted ({method})"),
        ]
        for ax, c in zip(psth_axes, (0, 1)):
            for b, (label, colour) in BLOCK_STYLE.items():
                sel = (choice == c) & (block == b)
                if not sel.any():
                    continue
                ax.plot(time, smooth(obs_u[sel].mean(0)) / dt, color=colour, linewidth=1, alpha=0.8)
                ax.plot(time, smooth(pred_u[sel].mean(0)) / dt, color=colour, linewidth=2.2, linestyle="--")
                ax.plot([], [], color=colour, linewidth=6, label=f"{label} (n = {sel.sum()} trials)")
            ax.axvline(0, color="0.6", linewidth=0.8)
            ax.set_title(f"{CHOICE_LABELS[c]} trials")
            ax.set_xlabel("time from stimulus onset (s)")
            ax.legend(handles=[*ax.get_legend_handles_labels()[0], *style], loc="best", fontsize=7)
        psth_axes[0].set_ylabel("firing rate (Hz)")
        top.suptitle(
            f"a) unit {unit} ({region}, {bps:.3f} bits/spike): test-trial PSTHs, "
            f"Gaussian smoothing s.d. {smooth_bins * dt * 1000:g} ms",
            x=0.01,
            ha="left",
        )
        # b) single-trial rasters, trials sorted by choice then block
        order = np.lexsort((block, choice))
        vmax = max(float(np.percentile(obs_u, 99.5)), float(pred_u.max()), 1e-9)
        resid = obs_u - pred_u
        rmax = max(float(np.percentile(np.abs(resid), 99.5)), 1e-9)
        raster_axes = middle.subplots(1, 3, sharey=True)
        panels = (
            (obs_u, "observed", "Greys", 0, vmax, "spikes per bin"),
            (pred_u, f"predicted ({method})", "Greys", 0, vmax, "expected spikes per bin"),
            (resid, "residual (observed − predicted)", "RdBu_r", -rmax, rmax, "spikes per bin"),
        )
        boundaries = np.flatnonzero(np.diff(choice[order] * 3 + block[order])) + 0.5
        for ax, (img, title, cmap, lo, hi, clabel) in zip(raster_axes, panels):
            im = ax.imshow(
                img[order],
                aspect="auto",
                interpolation="nearest",
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                extent=(*extent, len(order) - 0.5, -0.5),
            )
            for y in boundaries:
                ax.axhline(y, color="tab:orange", linewidth=0.8)
            ax.axvline(0, color="tab:orange", linewidth=0.8, linestyle=":")
            ax.set_title(title)
            ax.set_xlabel("time from stimulus onset (s)")
            middle.colorbar(im, ax=ax, label=clabel, shrink=0.9)
        groups = choice[order] * 3 + block[order]
        starts = np.r_[0, boundaries + 0.5].astype(int)
        ends = np.r_[boundaries + 0.5, len(order)].astype(int)
        group_labels = [f"{CHOICE_LABELS[g // 3].split()[1]}, {BLOCK_STYLE[g % 3][0]}" for g in groups[starts]]
        raster_axes[0].set_yticks((starts + ends - 1) / 2, group_labels, fontsize=7)
        raster_axes[0].set_ylabel("test trials by choice, block prior")
        middle.suptitle(
            f"b) unit {unit}: single test trials ({len(order)}), {dt * 1000:g} ms bins; "
            "orange lines separate choice × block groups",
            x=0.01,
            ha="left",
        )
        # c) decoded behaviour vs truth
        beh_axes = bottom.subplots(1, 2)
        shown = _example_trials(len(order), n_trials)
        colours = mpl.colormaps["tab10"].colors
        behaviours = (
            ("wheel", "wheel_speed", "wheel speed"),
            ("whisker", "whisker_motion_energy", "whisker motion energy"),
        )
        for ax, (var, truth_var, label) in zip(beh_axes, behaviours):
            truth = data[truth_var].values
            if var not in pred:
                ax.text(0.5, 0.5, f"{method} does not decode {label}", transform=ax.transAxes, ha="center")
                ax.set_title(label)
                continue
            decoded = pred[var].values
            for k, pos in enumerate(shown):
                colour = colours[k % len(colours)]
                ax.plot(time, truth[pos], color=colour, linewidth=1.2, label=f"trial {int(data['trial'].values[pos])}")
                ax.plot(time, decoded[pos], color=colour, linewidth=2, linestyle="--")
            ax.axvline(0, color="0.6", linewidth=0.8)
            ax.set_title(f"{label} (R² over all test trials {r2_score(truth, decoded):.2f})")
            ax.set_xlabel("time from stimulus onset (s)")
            ax.set_ylabel(f"{label} (min–max scaled)")
        if beh_axes[1].get_legend_handles_labels()[0]:
            beh_axes[1].legend(
                loc="upper left", bbox_to_anchor=(1.01, 1.0), title="solid: true\ndashed: decoded", title_fontsize=8
            )
        bottom.suptitle(f"c) decoded behaviour ({method}) on {len(shown)} test trials", x=0.01, ha="left")
        fig.suptitle(f"Session {data.attrs.get('eid', '?')}: {method} on held-out test trials", fontsize=11)
    return fig


def _probe_json(probe: dict | str | Path) -> dict:
    return probe if isinstance(probe, dict) else json.loads(Path(probe).read_text())


def _pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, F) -> the (U, 2) scores of the first two principal components (scikit-learn's
    :class:`~sklearn.decomposition.PCA`) and their explained variance fractions (2,).

    Each component's sign is set so that the unit farthest from the centre along it scores
    positive, so the same embeddings give the same map whatever sign the SVD returns. With fewer
    than two components (one unit or one feature) the missing ones are zeros.
    """
    x = np.asarray(x, np.float64)
    k = min(2, *x.shape)
    pca = PCA(n_components=k, svd_solver="full")
    scores = pca.fit_transform(x)
    scores = scores * np.where(scores[np.abs(scores).argmax(0), np.arange(k)] < 0, -1.0, 1.0)
    var = pca.explained_variance_ratio_
    if k < 2:
        scores = np.pad(scores, ((0, 0), (0, 2 - k)))
        var = np.pad(var, (0, 2 - k))
    return scores, var


def _confusion_panel(fig, ax, result: dict, regions: list[str], feature_set: str) -> None:
    conf = np.asarray(result["confusion"], dtype=np.float64)
    rows = conf.sum(1, keepdims=True)
    frac = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(frac.shape[0]):
        for j in range(frac.shape[1]):
            ax.text(
                j,
                i,
                f"{frac[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if frac[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(len(regions)), regions)
    ax.set_yticks(range(len(regions)), regions)
    ax.set_xlabel("predicted region")
    ax.set_ylabel("true region")
    ax.spines[:].set_visible(False)
    ax.set_title(
        f"confusion, {FEATURE_LABELS.get(feature_set, feature_set).replace(chr(10), ' ')} "
        f"(accuracy {result['accuracy']:.2f})"
    )
    fig.colorbar(im, ax=ax, label="fraction of the true region's units", shrink=0.85)


def _accuracy_panel(ax, results: dict, chance: float) -> None:
    names = [f for f in FEATURE_LABELS if f in results] + sorted(set(results) - set(FEATURE_LABELS))
    acc = [results[f]["accuracy"] for f in names]
    sem = [results[f].get("accuracy_sem", 0.0) for f in names]
    colours = [
        "#1f5f99" if f in ("input", "output", "both") else "#aaaaaa" for f in names
    ]  # embeddings, then simple features
    ax.bar(range(len(names)), acc, yerr=sem, color=colours, capsize=4, width=0.65)
    _hline(ax, chance, f"chance {chance:.2f} (majority region)")
    ax.set_xticks(range(len(names)), [FEATURE_LABELS.get(f, f) for f in names])
    ax.set_ylim(0, 1)
    ax.set_ylabel("region accuracy (fraction of units)")
    ax.set_title("cross-validated accuracy ± s.e.m. over folds")


def plot_probing(probe: dict | str | Path, embeddings: xr.Dataset | str | Path, feature_set: str = "both") -> Figure:
    """Brain-region probing of unit embeddings.

    Parameters
    ----------
    probe : ``results/probing/{target}/probe.json`` (or its dict): regions, chance and, per
        feature set, accuracy, accuracy_sem and the confusion matrix (rows true, columns
        predicted); ``results`` empty and ``skipped`` the reason when there were too few units
    embeddings : ``results/probing/{target}/embeddings.zarr`` (or its dataset): ``embedding``
        (unit, feature), coords ``region`` and ``session`` (unit)
    feature_set : whose confusion matrix is shown

    Panels: a 2-D PCA map of the embeddings coloured by region; the row-normalised confusion
    matrix of ``feature_set``; cross-validated accuracy per feature set (± s.e.m. over folds) vs
    chance. A skipped probe keeps the map and says why in place of the other two panels.
    """
    probe = _probe_json(probe)
    emb = verify_store(embeddings) if not isinstance(embeddings, xr.Dataset) else embeddings
    regions = list(probe["regions"])
    results = probe.get("results") or {}
    if results and feature_set not in results:
        raise ValueError(f"feature set {feature_set!r} is not in the probe results {sorted(results)}")
    unit_region = as_str(emb["region"].values)
    scores, var = _pca_2d(emb["embedding"].values)
    palette = mpl.colormaps["tab10"].colors
    colour = {r: REGIONS[r].colour if r in REGIONS else palette[i % len(palette)] for i, r in enumerate(regions)}
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(14, 4.4), layout="constrained")
        ax_map, ax_conf, ax_acc = fig.subplots(1, 3, width_ratios=(1.1, 1, 1.1))
        for r in [*regions, *sorted(set(unit_region) - set(regions))]:
            sel = unit_region == r
            if sel.any():
                ax_map.scatter(
                    scores[sel, 0],
                    scores[sel, 1],
                    s=10,
                    alpha=0.75,
                    color=colour.get(r, "0.6"),
                    edgecolor="none",
                    label=f"{r} ({sel.sum()})",
                )
        ax_map.set_xlabel(f"PC 1 ({100 * var[0]:.0f} % of variance)")
        ax_map.set_ylabel(f"PC 2 ({100 * var[1]:.0f} % of variance)")
        ax_map.set_title(
            f"unit embeddings, PCA ({len(unit_region)} units, {len(set(as_str(emb['session'].values)))} sessions)"
        )
        ax_map.legend(title="region (units)", loc="best", markerscale=2)
        if results:
            _confusion_panel(fig, ax_conf, results[feature_set], regions, feature_set)
            _accuracy_panel(ax_acc, results, float(probe["chance"]))
        else:
            reason = probe.get("skipped", "no probe results")
            for ax in (ax_conf, ax_acc):
                ax.set_axis_off()
            ax_conf.text(
                0.5,
                0.5,
                "probing skipped:\n" + textwrap.fill(reason, 50),
                transform=ax_conf.transAxes,
                ha="center",
                va="center",
                wrap=True,
            )
        fig.suptitle(
            f"Brain-region probing: {probe.get('target', '?')} model, {probe.get('n_units', len(unit_region))} units, "
            f"{len(regions)} regions"
        )
    return fig


def plot_training_curves(runs: Mapping[str, Sequence[str | Path]]) -> Figure:
    """Training loss and validation score vs epoch, one row per kind of run.

    Parameters
    ----------
    runs : kind (a stage of :data:`neds.vocab.STAGES`) -> history.jsonl paths
        (:func:`neds.io.history.read_history`); a run is labelled by its folder name (the session
        id for per-session runs). The best validation epoch (the checkpoint kept) is marked with a
        star. Rows follow the order of the stages, titled by their ``title``.

    The validation score is the mean of the validation metrics the run's mode produces: bits per
    spike and/or choice and block accuracy, wheel and whisker R². The third column is each
    modality's training loss as the fraction of its null deviance left
    (:mod:`neds.model.balance`; 1 at the null model, 0 when perfect), the mean over the row's
    runs: a modality that stops learning stays flat. With both fine-tuned and from-scratch runs, a
    last row overlays their validation curves per held-out session.
    """
    kinds = [k for k in STAGES if runs.get(k)] + [k for k in runs if k not in STAGES and runs[k]]
    labels = sorted({Path(p).parent.name for k in kinds if k != PRETRAIN.name for p in runs[k]})
    palette = mpl.colormaps["tab10"].colors
    colour = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    paired = bool(runs.get(FINETUNE.name)) and bool(runs.get(SCRATCH.name))
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(14, 2.3 * (len(kinds) + paired) + 0.8), layout="constrained")
        axes = np.atleast_2d(fig.subplots(len(kinds) + paired, 3, sharex="row"))
        if paired:
            _plot_finetuned_vs_scratch(axes[-1], runs[FINETUNE.name], runs[SCRATCH.name], colour)
        for row, kind in zip(axes, kinds):
            vs_null = []
            for path in runs[kind]:
                label = Path(path).parent.name if kind != PRETRAIN.name else "pretraining"
                c = colour.get(label, "black")
                h = read_history(path)
                vs_null.append(h.filter(regex=r"^epoch$|^train_\w+_vs_null$"))
                row[0].plot(h["epoch"], h["train_loss"], color=c, linewidth=1.5, label=label[:8])
                if "val_score" in h:
                    v = h[["epoch", "val_score"]].dropna()
                    row[1].plot(v["epoch"], v["val_score"], color=c, marker="o", markersize=3, linewidth=1.5)
                    if len(v):
                        best = v.loc[v["val_score"].idxmax()]
                        row[1].plot(
                            best["epoch"],
                            best["val_score"],
                            marker="*",
                            markersize=12,
                            color=c,
                            markeredgecolor="black",
                            markeredgewidth=0.5,
                        )
            _plot_vs_null(row[2], vs_null)
            row[0].set_ylabel("training loss\n(summed masked losses)")
            row[1].set_ylabel(SCORE_LABELS.get(kind, "validation score\n(mean of bps and decoding)"))
            row[0].set_title(STAGES[kind].title if kind in STAGES else kind, loc="left")
            for ax in row:
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        modality_handles = [Line2D([], [], color=MODALITY_COLOURS[m], linewidth=2, label=m) for m in MODALITIES]
        fig.legend(handles=modality_handles, title="modality", loc="outside right upper")
        if labels:
            handles = [Line2D([], [], color=colour[s], linewidth=2, label=s[:8]) for s in labels]
            fig.legend(handles=handles, title="held-out session", loc="outside lower center", ncol=min(len(labels), 6))
        fig.suptitle("Training curves; ★ the best validation epoch (the checkpoint kept)")
    return fig


def _plot_finetuned_vs_scratch(row, finetuned: Sequence[str | Path], scratch: Sequence[str | Path], colour) -> None:
    """The last row of the training curves: per held-out session, the fine-tuned model's
    validation curves (solid) over the model's trained from scratch (dashed): the selection
    score, bits per spike and the mean of the four decoding scores. A plateau at the start of
    fine-tuning shows as a solid line below its dashed one."""
    decoding = [f"val_{m}" for m in SELECTION_METRICS if m != "bps_unit_mean"]
    for paths, style in ((finetuned, "-"), (scratch, "--")):
        for path in paths:
            h = read_history(path)
            if "val_score" not in h:
                continue
            v = h.dropna(subset=["val_score"])
            c = colour.get(Path(path).parent.name, "black")
            row[0].plot(v["epoch"], v["val_score"], color=c, linestyle=style, linewidth=1.5)
            if "val_bps" in v:
                row[1].plot(v["epoch"], v["val_bps"], color=c, linestyle=style, linewidth=1.5)
            if all(k in v for k in decoding):
                row[2].plot(v["epoch"], v[decoding].mean(axis=1), color=c, linestyle=style, linewidth=1.5)
    row[0].set_title("fine-tuned (solid) against from scratch (dashed), validation trials", loc="left")
    for ax, label in zip(
        row, ("validation score", "validation bits per spike", "validation decoding\n(mean of 4 scores)")
    ):
        ax.set_ylabel(label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _plot_vs_null(ax, histories: list[pd.DataFrame]) -> None:
    """Each modality's fraction of null deviance left, mean over ``histories`` by epoch."""
    table = pd.concat(histories) if histories else pd.DataFrame()
    present = [m for m in MODALITIES if f"train_{m}_vs_null" in table]
    if not present:
        ax.text(
            0.5, 0.5, "not recorded\n(a run of an earlier version)", ha="center", va="center", transform=ax.transAxes
        )
    mean = table.groupby("epoch").mean() if present else table
    for m in present:
        ax.plot(mean.index, mean[f"train_{m}_vs_null"], color=MODALITY_COLOURS[m], linewidth=1.5)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylabel("training loss / null deviance\n(1: null model, 0: perfect)")


EXPERIMENT_METRICS = SELECTION_METRICS


def plot_experiment(metrics: pd.DataFrame | str | Path, experiment: str) -> Figure:
    """One panel per headline metric; one column per (variant, model), sessions as points with
    their mean ± s.e.m. ``metrics`` has the columns of results/experiments/<exp>/metrics.tsv
    (variant, method, eid, split and the metrics); the figure is titled by the experiment's title
    (:data:`neds.experiments.EXPERIMENT_TITLES`)."""
    df = _table(metrics).copy()
    order = list(dict.fromkeys(df["variant"]))
    short = {NEDS_FINETUNED: "fine-tuned", NEDS_SCRATCH: "scratch"}
    df["method"] = [
        f"{v}\n{short.get(m, m)}" + ("\n(val)" if s == "val" else "")
        for v, m, s in zip(df["variant"], df["method"], df["split"])
    ]
    columns = list(dict.fromkeys(m for v in order for m in df.loc[df["variant"] == v, "method"]))
    metrics_present = [m for m in EXPERIMENT_METRICS if m in df and df[m].notna().any()]
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(max(6.0, 0.9 * len(columns) + 1.5), 2.4 * len(metrics_present)), layout="constrained")
        axes = fig.subplots(len(metrics_present), 1, squeeze=False)[:, 0]
        for ax, metric in zip(axes, metrics_present):
            _strip(ax, df, metric, columns, floor=FLOOR if metric != "choice_acc" and metric != "block_acc" else None)
            ax.tick_params(axis="x", labelsize=7)
        title = f"{EXPERIMENT_TITLES.get(experiment, experiment)}: held-out sessions ({_n_sessions(df)})"
        fig.suptitle(textwrap.fill(title, max(40, int(11 * fig.get_figwidth()))))
    return fig


def plot_data_gain(table: pd.DataFrame | str | Path, title: str, axis_label: str) -> Figure:
    """The gain of pretraining as a function of the data: one panel per metric, the fine-tuned
    and the from-scratch model's mean ± s.d. over seeds at each amount of data (log-scaled
    axis), and a last panel with each metric's gain in percent of scratch.

    table : the experiment's ``gain.tsv`` (:func:`neds.evaluate.gain.over_seeds`: level, metric,
        finetuned_mean/_sd, scratch_mean/_sd, gain_percent, seeds)
    """
    df = _table(table)
    metrics = [m for m in SELECTION_METRICS if m in set(df["metric"])]
    levels = sorted(set(df["level"]))
    with mpl.rc_context(STYLE):
        n = len(metrics) + 1
        fig = Figure(figsize=(3.0 * min(n, 3), 2.8 * -(-n // 3)), layout="constrained")
        axes = fig.subplots(-(-n // 3), min(n, 3), squeeze=False).ravel()
        for ax, metric in zip(axes, metrics):
            g = df[df["metric"] == metric].sort_values("level")
            for method, column, shift in ((NEDS_SCRATCH, "scratch", 0.97), (NEDS_FINETUNED, "finetuned", 1.03)):
                label, colour = _method_style(method)
                ax.errorbar(
                    g["level"] * shift,  # side by side on the log axis
                    g[f"{column}_mean"],
                    yerr=g[f"{column}_sd"].fillna(0.0),
                    fmt="o-",
                    markersize=4,
                    capsize=3,
                    linewidth=1.2,
                    color=colour,
                    label=label,
                )
            ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=9)
        gain_ax = axes[len(metrics)]
        for metric in metrics:
            g = df[df["metric"] == metric].sort_values("level")
            gain_ax.plot(g["level"], g["gain_percent"], "o-", markersize=4, label=metric)
        gain_ax.axhline(0.0, color="0.4", linewidth=1, linestyle="--", zorder=1)
        gain_ax.set_title("gain of pretraining (% of scratch)", fontsize=9)
        gain_ax.legend(fontsize=7)
        for ax in axes[:n]:
            ax.set_xscale("log")
            ax.set_xticks(levels, [f"{x:g}" for x in levels])
            ax.minorticks_off()
        for ax in axes[n:]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7)
        seeds = int(df["seeds"].max()) if len(df) else 0
        fig.supxlabel(axis_label)
        fig.suptitle(
            textwrap.fill(
                f"{title}: test trials, mean ± s.d. over {seeds} seed(s) of the mean over held-out sessions", 90
            )
        )
    return fig
