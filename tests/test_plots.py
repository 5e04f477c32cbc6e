"""Figures: each plotting function on tiny fake inputs, saved as valid PNG and SVG, with the
panels, labels and plotted values it promises."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neds import plots
from neds.evaluate.tables import pretraining_gain, summarize, summary_html
from neds.io.history import read_history
from neds.io.store import text_array, write_zarr

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EIDS = ("s1", "s2", "s3")


def assert_saved(fig, path):
    plots.save_figure(fig, path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert ET.parse(path.with_suffix(".svg")).getroot().tag.endswith("svg")


def hlines(ax):
    """y of the horizontal reference lines (axhline) of an axes."""
    return [
        line.get_ydata()[0]
        for line in ax.get_lines()
        if np.ptp(line.get_xdata()) == 1 and np.ptp(line.get_ydata()) == 0
    ]


@pytest.fixture
def metrics():
    rows = []
    for k, eid in enumerate(EIDS):
        base = {"eid": eid, "split": "test", "n_trials": 20, "n_units": 6}
        enc = lambda v: {"bps_unit_mean": v, "bps_pooled": v + 0.05}  # noqa: E731
        dec = lambda v: {"choice_acc": 0.6 + v, "block_acc": 0.4 + v, "wheel_r2": 0.3 + v, "whisker_r2": 0.5 + v}  # noqa: E731
        rows += [
            {**base, "method": "neds_finetuned", **enc(0.2 + 0.01 * k), **dec(0.1)},
            {**base, "method": "neds_scratch", **enc(0.1 + 0.01 * k), **dec(0.05 * k)},
            {**base, "method": "unimodal_encoding", **enc(0.15)},
            {**base, "method": "unimodal_decoding", **dec(0.0)},
            {**base, "method": "linear", **enc(0.05), **dec(-0.1)},
            {**base, "method": "oracle", **enc(0.3)},
        ]
    rows[-1]["bps_unit_mean"] = -5.0  # one value far below the plotted floor
    return pd.DataFrame(rows)


def test_methods_encoding(metrics, tmp_path):
    path = tmp_path / "metrics.tsv"
    metrics.to_csv(path, sep="\t", index=False)
    fig = plots.plot_methods_encoding(path)  # from the path, as the rule does
    assert_saved(fig, tmp_path / "methods_encoding.png")
    ax_mean, ax_pooled = fig.axes
    assert ax_mean.get_ylabel() == "bits per spike (mean over units)"
    assert ax_pooled.get_ylabel() == "bits per spike (pooled over units)"
    labels = [t.get_text() for t in ax_mean.get_xticklabels()]
    assert labels[0] == "NEDS\nfine-tuned" and labels[-1] == "oracle\n(true rates)" and len(labels) == 5
    assert "unimodal\ndecoding" not in labels  # no encoding metric, no column
    # the null at 0 and the oracle mean as references; the clipped session sits on the floor
    assert 0.0 in hlines(ax_pooled) and pytest.approx(0.35) in hlines(ax_pooled)
    assert ax_mean.get_ylim()[0] < plots.FLOOR and any("below" in t.get_text() for t in ax_mean.texts)
    # each method column: its sessions' points
    n_points = sum(
        len(c.get_offsets()) for c in ax_pooled.collections if c.get_offsets().ndim == 2 and len(c.get_offsets()) == 3
    )
    assert n_points == 15


def test_error_bars_follow_the_mean_sem_rule():
    """A column with one session (after its NaNs are dropped) shows its mean without an error bar;
    a column with two shows mean ± s.e.m. (neds.evaluate.tables.mean_sem)."""
    df = pd.DataFrame(
        [
            {"method": "neds_finetuned", "eid": "s1", "bps_unit_mean": 0.2, "bps_pooled": 0.3},
            {"method": "linear", "eid": "s1", "bps_unit_mean": 0.1, "bps_pooled": 0.1},
            {"method": "linear", "eid": "s2", "bps_unit_mean": 0.15, "bps_pooled": np.nan},
        ]
    )
    ax_mean, ax_pooled = plots.plot_methods_encoding(df).axes
    bars = {round(c.lines[0].get_xdata()[0]): c for c in ax_mean.containers}  # column -> its mean's error bar
    assert bars[0].lines[0].get_ydata()[0] == 0.2 and not len(bars[0].lines[2][0].get_segments()[0])
    (_, low), (_, high) = bars[1].lines[2][0].get_segments()[0]
    assert bars[1].lines[0].get_ydata()[0] == pytest.approx(0.125) and (low, high) == pytest.approx((0.1, 0.15))
    linear = next(c for c in ax_pooled.containers if round(c.lines[0].get_xdata()[0]) == 1)
    assert linear.lines[0].get_ydata()[0] == 0.1 and not len(linear.lines[2][0].get_segments()[0])  # one value left


def test_saved_files_are_reproducible(metrics, tmp_path):
    for name in ("a", "b"):
        plots.save_figure(plots.plot_methods_decoding(metrics), tmp_path / f"{name}.png")
    for ext in ("png", "svg"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()


def test_methods_decoding(metrics, tmp_path):
    fig = plots.plot_methods_decoding(metrics)
    assert_saved(fig, tmp_path / "methods_decoding.png")
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["choice accuracy", "block accuracy", "wheel speed R²", "whisker motion energy R²"]
    assert (
        hlines(fig.axes[0]) == [0.5] and hlines(fig.axes[1]) == [pytest.approx(1 / 3)] and hlines(fig.axes[2]) == [0.0]
    )
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["NEDS\nfine-tuned", "NEDS\nfrom scratch", "unimodal\ndecoding", "linear\nbaseline"]


def test_pretraining_gain(metrics, tmp_path):
    gain = pretraining_gain(metrics)
    fig = plots.plot_pretraining_gain(metrics, gain)
    assert_saved(fig, tmp_path / "pretraining_gain.png")
    assert len(fig.axes) == 5
    ax = fig.axes[0]
    want = gain.set_index("metric").loc["bps_unit_mean", "gain_percent"]
    assert f"gain {want:+.1f} %" in ax.get_title() and want == pytest.approx(100 * 0.1 / 0.11)
    # one point per session at (scratch, fine-tuned)
    xy = ax.collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(xy), [[0.10, 0.20], [0.11, 0.21], [0.12, 0.22]])
    assert ax.get_xlim() == ax.get_ylim()  # square, so the diagonal is the identity


@pytest.fixture
def session():
    """A binned session (24 trials, 100 bins of 20 ms, 6 units) and fine-tuned predictions on its
    12 test trials. Unit 4 fires exactly one spike per bin."""
    rng = np.random.default_rng(0)
    k, t, n = 24, 100, 6
    spikes = rng.poisson(0.3, (k, t, n)).astype(np.uint16)
    spikes[:, :, 4] = 1
    spikes[:, :, 5] = 0  # silent unit: excluded from the example even with the best bps
    trial = np.arange(k) * 2  # ALF indices, not positions
    binned = xr.Dataset(
        {
            "spikes": (("trial", "time", "unit"), spikes),
            "wheel_speed": (("trial", "time"), rng.uniform(0, 1, (k, t)).astype(np.float32)),
            "whisker_motion_energy": (("trial", "time"), rng.uniform(0, 1, (k, t)).astype(np.float32)),
            "choice": (("trial",), np.tile([0, 0, 1, 1], k // 4).astype(np.int8)),
            "block": (("trial",), np.repeat([0, 1, 2], k // 3).astype(np.int8)),
        },
        coords={
            "trial": trial,
            "time": -0.49 + 0.02 * np.arange(t),
            "split": ("trial", text_array(["train", "test"] * (k // 2))),
            "unit_region": ("unit", text_array(["CA1", "DG", "LP", "PO", "VISa", "LP"])),
        },
        attrs={"eid": "s1"},
    )
    test = trial[1::2]
    pred = xr.Dataset(
        {
            "rate": (("trial", "time", "unit"), np.full((len(test), t, n), 0.5, np.float32)),
            "wheel": (("trial", "time"), rng.uniform(0, 1, (len(test), t)).astype(np.float32)),
            "whisker": (("trial", "time"), rng.uniform(0, 1, (len(test), t)).astype(np.float32)),
            "unit_bps": (("unit",), np.array([0.1, 0.0, 0.2, 0.05, 0.3, 0.9])),
        },
        coords={"trial": test},
        attrs={"method": "neds_finetuned"},
    )
    return binned, pred


def test_choose_example_unit(session):
    binned, pred = session
    counts = binned["spikes"].values.astype(float)
    assert plots.choose_example_unit(counts, pred["unit_bps"].values) == 4  # unit 5 is silent


def test_examples(session, tmp_path):
    binned, pred = session
    write_zarr(binned, tmp_path / "s1.zarr")
    write_zarr(pred, tmp_path / "neds_finetuned.zarr")
    fig = plots.plot_examples(tmp_path / "s1.zarr", tmp_path / "neds_finetuned.zarr", n_trials=3)
    assert_saved(fig, tmp_path / "examples_s1.png")
    titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert {
        "choice −1 trials",
        "choice +1 trials",
        "observed",
        "predicted (neds_finetuned)",
        "residual (observed − predicted)",
    } <= set(titled)
    psth = titled["choice −1 trials"]
    assert psth.get_ylabel() == "firing rate (Hz)"
    # unit 4 fires one spike per 20 ms bin: 50 Hz observed; predicted 0.5 per bin: 25 Hz
    observed, predicted = psth.get_lines()[0].get_ydata(), psth.get_lines()[1].get_ydata()
    np.testing.assert_allclose(observed, 50.0)
    np.testing.assert_allclose(predicted, 25.0)
    # the rasters hold the 12 test trials, the residual is observed - predicted
    np.testing.assert_allclose(titled["residual (observed − predicted)"].images[0].get_array(), 0.5)
    assert titled["observed"].images[0].get_array().shape == (12, 100)
    wheel = next(ax for ax in fig.axes if ax.get_title().startswith("wheel speed"))
    assert wheel.get_ylabel() == "wheel speed (min–max scaled)" and len(wheel.get_lines()) == 2 * 3 + 1


def test_examples_needs_rates(session):
    binned, pred = session
    with pytest.raises(ValueError, match="no 'rate'"):
        plots.plot_examples(binned, pred.drop_vars("rate"))


@pytest.fixture
def probing(tmp_path):
    regions = ["CA1", "DG", "LP", "PO", "VISa"]
    rng = np.random.default_rng(1)
    unit_region = np.repeat(regions, 8)
    emb = rng.normal(size=(40, 6)) + 3 * np.eye(5, 6)[np.repeat(np.arange(5), 8)]
    sets = ("input", "output", "both", "mean_rate", "psth")
    conf = (np.eye(5, dtype=int) * 6 + 1).tolist()  # 7 on the diagonal, 1 elsewhere: rows sum to 11
    probe = {
        "target": "pretrain",
        "n_units": 40,
        "regions": regions,
        "chance": 0.2,
        "results": {
            s: {
                "accuracy": 0.3 + 0.1 * i,
                "balanced_accuracy": 0.3,
                "accuracy_sem": 0.02,
                "f1": dict.fromkeys(regions, 0.5),
                "confusion": conf,
            }
            for i, s in enumerate(sets)
        },
    }
    (tmp_path / "probe.json").write_text(json.dumps(probe))
    ds = xr.Dataset(
        {"embedding": (("unit", "feature"), emb)},
        coords={"region": ("unit", text_array(unit_region)), "session": ("unit", text_array(["a", "b"] * 20))},
    )
    write_zarr(ds, tmp_path / "embeddings.zarr")
    return tmp_path / "probe.json", tmp_path / "embeddings.zarr", probe


def test_probing(probing, tmp_path):
    probe_path, emb_path, probe = probing
    fig = plots.plot_probing(probe_path, emb_path)
    assert_saved(fig, tmp_path / "probing_pretrain.png")
    ax_map, ax_conf, ax_acc = fig.axes[:3]
    assert ax_map.get_xlabel().startswith("PC 1 (") and "% of variance" in ax_map.get_ylabel()
    assert [t.get_text() for t in ax_map.get_legend().get_texts()] == [f"{r} (8)" for r in probe["regions"]]
    frac = np.asarray(ax_conf.images[0].get_array())
    np.testing.assert_allclose(frac.sum(1), 1.0)  # rows normalised
    assert frac[0, 0] == pytest.approx(7 / 11)
    assert ax_conf.get_xlabel() == "predicted region" and ax_conf.get_ylabel() == "true region"
    heights = [p.get_height() for p in ax_acc.patches]
    np.testing.assert_allclose(heights, [0.3, 0.4, 0.5, 0.6, 0.7])
    assert hlines(ax_acc) == [0.2]


def test_probing_unknown_feature_set(probing):
    probe_path, emb_path, _ = probing
    with pytest.raises(ValueError, match="feature set 'weights'"):
        plots.plot_probing(probe_path, emb_path, feature_set="weights")


def test_probing_skipped_keeps_the_map(probing, tmp_path):
    _, emb_path, probe = probing
    skipped = {**probe, "results": {}, "skipped": "probing needs >= 2 regions with >= 5 units each"}
    fig = plots.plot_probing(skipped, emb_path)
    assert_saved(fig, tmp_path / "probing_skipped.png")
    ax_map, ax_conf, ax_acc = fig.axes
    assert len(ax_map.collections) == 5 and not ax_conf.axison and not ax_acc.axison
    assert "probing skipped" in ax_conf.texts[0].get_text()


def test_pca_2d_finds_the_dominant_axis():
    rng = np.random.default_rng(2)
    x = np.c_[rng.normal(0, 10, 200), rng.normal(0, 1, 200), rng.normal(0, 0.1, 200)]
    scores, var = plots._pca_2d(x)
    assert scores.shape == (200, 2) and var[0] > 0.95
    assert abs(np.corrcoef(scores[:, 0], x[:, 0])[0, 1]) > 0.99
    # the projection of an SVD of the centred data, up to each component's sign
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    svd = u[:, :2] * s[:2]
    np.testing.assert_allclose(np.abs(scores), np.abs(svd), atol=1e-9)
    np.testing.assert_allclose(var, s[:2] ** 2 / (s**2).sum())
    # the sign is fixed by the data, not by the SVD: the farthest unit scores positive, and a
    # mirrored copy of the data gives the same map
    assert all(scores[np.abs(scores[:, k]).argmax(), k] > 0 for k in range(2))
    np.testing.assert_allclose(plots._pca_2d(-x)[0], scores, atol=1e-9)
    # one feature: the second component is zeros
    one, var1 = plots._pca_2d(x[:, :1])
    assert one.shape == (200, 2) and not one[:, 1].any() and var1[0] == pytest.approx(1.0) and var1[1] == 0


def test_training_curves(tmp_path):
    runs = {}
    for kind in ("pretrain", "finetune", "scratch", "encoding"):
        eids = ["."] if kind == "pretrain" else ["s1", "s2"]
        runs[kind] = []
        for eid in eids:
            folder = tmp_path / kind / eid
            folder.mkdir(parents=True, exist_ok=True)
            rows = [{"epoch": e, "lr": 1e-3, "train_loss": 3.0 / e} for e in range(1, 7)]
            if kind == "finetune":  # each modality's fraction of null deviance; whisker stops learning
                for r in rows:
                    r.update(train_spikes_vs_null=1 - 0.01 * r["epoch"] * (eid == "s1"), train_whisker_vs_null=1.0)
            for e, score in ((2, 0.1), (4, 0.3), (6, 0.2)):
                rows[e - 1].update(val_score=score, val_bps=score)
            (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            runs[kind].append(folder / "history.jsonl")
    fig = plots.plot_training_curves(runs)
    assert_saved(fig, tmp_path / "training_curves.png")
    assert len(fig.axes) == 3 * (4 + 1)  # a row per stage, then fine-tuned against scratch
    loss, val, vs_null = fig.axes[3], fig.axes[4], fig.axes[5]  # fine-tuning row
    spikes, whisker = vs_null.get_lines()[:2]  # one line per recorded modality: the mean over the row's runs
    np.testing.assert_allclose(spikes.get_ydata(), 1 - 0.005 * np.arange(1, 7))
    np.testing.assert_allclose(whisker.get_ydata(), 1.0)
    assert spikes.get_color() == plots.MODALITY_COLOURS["spikes"]
    assert "not recorded" in fig.axes[2].texts[0].get_text()  # pretraining kept no such record
    assert loss.get_title(loc="left").startswith("fine-tuning") and loss.get_xlabel() == "epoch"
    assert len(loss.get_lines()) == 2
    curve, star = val.get_lines()[:2]
    np.testing.assert_array_equal(curve.get_xdata(), [2, 4, 6])  # validation epochs only
    assert star.get_marker() == "*" and star.get_xdata()[0] == 4  # the best epoch
    assert fig.axes[-5].get_ylabel() == "validation bits per spike"  # the encoding row
    score, bps, _ = fig.axes[-3:]
    assert score.get_title(loc="left").startswith("fine-tuned (solid) against from scratch (dashed)")
    styles = [(line.get_linestyle(), tuple(line.get_xdata())) for line in score.get_lines()]
    assert styles == [("-", (2, 4, 6))] * 2 + [("--", (2, 4, 6))] * 2  # s1, s2 fine-tuned, then scratch
    assert score.get_lines()[0].get_color() == score.get_lines()[2].get_color()  # one colour per session
    assert len(bps.get_lines()) == 4


def test_read_history(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"epoch": 1, "train_loss": 2.0}\n{"epoch": 2, "train_loss": 1.0, "val_score": 0.5}\n')
    h = read_history(path)
    assert list(h["epoch"]) == [1, 2] and np.isnan(h["val_score"][0]) and h["val_score"][1] == 0.5


def test_summary_html(metrics):
    html = summary_html(summarize(metrics), pretraining_gain(metrics))
    assert html.startswith("<!DOCTYPE html>") and html.count("<table") == 3  # encoding, decoding, gain
    encoding, decoding = html.split("<h3>Decoding</h3>")[0], html.split("<h3>Decoding</h3>")[1].split("<h3>Gain")[0]
    assert "oracle" in encoding and "oracle" not in decoding and "unimodal_decoding" not in encoding
    assert "0.210 ± 0.006" in html  # neds_finetuned bps_unit_mean over the three sessions
    assert "+90.9" in html  # bps_unit_mean gain in percent
