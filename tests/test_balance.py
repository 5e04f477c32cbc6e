"""The balance of the modalities' losses (training.loss): null deviances, the four balances,
the per-modality diagnostics, and training with learned weights (resumed exactly)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from neds.data.dataset import random_trials
from neds.model.balance import LossBalance, LossTerm, null_deviances, poisson_floor
from neds.model.masking import draw_masks
from neds.model.neds import NEDS, ModelConfig, Output
from neds.train import TrainConfig, build_model, train
from neds.vocab import BEHAVIOURS, GRADIENT_GROUPS, LOSS_BALANCES, MODALITIES

TINY = ModelConfig(hidden=16, n_heads=2, mlp=32, n_layers=1, dropout=0.0, token_dropout=0.0)
UNITS = [7, 12]


@pytest.fixture(autouse=True)
def _seed():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _null_output(data, idx):
    """The null model's predictions for trials ``idx``: each unit's mean count, the behaviours'
    means and class frequencies, all from the same trials."""
    b = data.batch(idx)
    rate = b.spikes.mean((0, 1), keepdim=True).expand_as(b.spikes).clamp(min=1e-12)
    freq = {k: torch.bincount(getattr(b, k), minlength=n).float() / len(idx) for k, n in (("choice", 2), ("block", 3))}
    return b, Output(
        spikes=torch.log(rate),
        wheel=b.wheel.mean().expand_as(b.wheel),
        whisker=b.whisker.mean().expand_as(b.whisker),
        choice=torch.log(freq["choice"]).expand(len(idx), 2),
        block=torch.log(freq["block"]).expand(len(idx), 3),
    )


def test_null_deviances_by_their_definition():
    data = random_trials([9], 30, rate=0.4)
    idx = torch.arange(30)
    nulls = null_deviances(data, idx)
    assert nulls.shape == (1, len(MODALITIES))
    y = data.spikes[:, :, :9].double()
    rate = y.mean((0, 1))
    dev = rate - torch.xlogy(y, rate) - (y - torch.xlogy(y, y))
    assert nulls[0, 0].item() == pytest.approx(dev.mean().item(), rel=1e-9)
    assert nulls[0, 1].item() == pytest.approx(data.wheel.double().var(unbiased=False).item(), rel=1e-9)
    p = torch.bincount(data.block, minlength=3).double() / 30
    assert nulls[0, 4].item() == pytest.approx(-(p * p.log()).sum().item(), rel=1e-9)
    # a session without trials among idx is NaN, not a number made up
    two = random_trials([4, 5], 10)
    assert torch.isnan(null_deviances(two, torch.arange(10))[1]).all()


def test_every_modality_is_one_at_the_null_model_and_zero_when_perfect():
    data = random_trials(UNITS, 40, rate=0.3)
    idx = torch.arange(40)  # one session: the null of its own trials
    nulls = null_deviances(data, torch.arange(80))
    model = NEDS(TINY, UNITS)
    masks = draw_masks(40, 100, 0.3, torch.Generator().manual_seed(0))
    masks.spikes[:] = True
    masks.behaviour[:] = True
    batch, null_out = _null_output(data, idx)
    balance = LossBalance("null", nulls=nulls)
    total, parts = balance(model.loss_terms(null_out, batch, masks), batch.session)
    for m in MODALITIES:
        assert parts[f"{m}_vs_null"].item() == pytest.approx(1.0, rel=1e-4), m
    assert total.item() == pytest.approx(len(MODALITIES), rel=1e-4)
    perfect = Output(
        spikes=torch.log(batch.spikes.clamp(min=1e-30)),
        wheel=batch.wheel,
        whisker=batch.whisker,
        choice=F.one_hot(batch.choice, 2).float() * 60,
        block=F.one_hot(batch.block, 3).float() * 60,
    )
    _, parts = balance(model.loss_terms(perfect, batch, masks), batch.session)
    for m in MODALITIES:
        assert abs(parts[f"{m}_vs_null"].item()) < 1e-4, m


def test_null_units_counts_each_unit_of_a_population_as_a_signal():
    """One session of N units: the spike term is N times ``null``'s (its fraction of the null
    deviance left, per masked bin rather than per masked (bin, unit) element); the behaviours'
    terms are ``null``'s; the reported parts are the same under both."""
    data = random_trials(UNITS, 30, rate=0.3)
    idx = torch.arange(30, 60)  # session 1's trials
    nulls = null_deviances(data, idx)
    model = NEDS(TINY, UNITS)
    batch = data.batch(idx[:8])
    masks = draw_masks(8, 100, 0.3, torch.Generator().manual_seed(3))
    terms = model.loss_terms(model(batch, masks), batch, masks)
    total, parts = LossBalance("null_units", nulls=nulls)(terms, batch.session)
    _, null_parts = LossBalance("null", nulls=nulls)(terms, batch.session)
    assert parts.keys() == null_parts.keys()
    assert all(torch.equal(parts[k], null_parts[k]) for k in parts)
    behaviour = sum(parts[f"{m}_vs_null"] for m in MODALITIES if m != "spikes")
    expected = UNITS[1] * parts["spikes_vs_null"] + behaviour
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="needs the null deviances"):
        LossBalance("null_units")


def _forward(seed: int):
    """A model's outputs on a batch of trials of both sessions, with masks drawn from ``seed``."""
    data = random_trials(UNITS, 6)
    model = NEDS(TINY, UNITS)
    batch = data.batch(torch.tensor([0, 1, 7, 8]))
    masks = draw_masks(4, 100, 0.3, torch.Generator().manual_seed(seed))
    return model, batch, masks, model(batch, masks)


def test_weights_balance_is_the_weighted_mean_per_masked_token():
    model, batch, masks, out = _forward(1)
    sel = masks.spikes.float()
    nll = ((torch.exp(out.spikes) - batch.spikes * out.spikes) * batch.unit_mask[:, None, :]).sum(-1)
    spikes = (nll * sel).sum() / sel.sum()
    total, parts = model.loss(out, batch, masks, {"spikes": 2.0, "choice": 0.0})
    assert parts["spikes"].item() == pytest.approx(spikes.item(), rel=1e-5)
    assert not any(k.endswith("_vs_null") for k in parts)  # no nulls given, no diagnostics
    expected = 2.0 * parts["spikes"] + parts["wheel"] + parts["whisker"] + parts["block"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_paper_balance_follows_the_authors_normalisation():
    model, batch, masks, out = _forward(2)
    total, _ = LossBalance("paper")(model.loss_terms(out, batch, masks), batch.session)
    elem = (masks.spikes[:, :, None] & batch.unit_mask[:, None, :]).float()
    spikes = ((torch.exp(out.spikes) - batch.spikes * out.spikes) * elem).sum() / elem.sum()
    expected = spikes
    for i, k in enumerate(("wheel", "whisker")):
        sel = masks.behaviour[:, i].float()
        expected = expected + (((getattr(out, k) - getattr(batch, k)) ** 2) * sel).sum() / sel.sum()
    for i, k in enumerate(("choice", "block"), start=2):
        sel = masks.behaviour[:, i, 0].float()
        ce = F.cross_entropy(getattr(out, k), getattr(batch, k), reduction="none")
        if sel.sum() > 0:  # summed over the batch, divided by the masked bins
            expected = expected + (ce * sel).sum() / (sel.sum() * 100)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_uncertainty_balance_learns_one_weight_per_modality_and_skips_unmasked_ones():
    nulls = torch.ones(1, len(MODALITIES))
    balance = LossBalance("uncertainty", nulls=nulls)
    assert [n for n, _ in balance.named_parameters()] == ["log_var"]
    one = torch.ones(2)
    choice_out = torch.zeros(2, requires_grad=True)  # the choice head's output, its token masked nowhere
    terms = {
        "spikes": LossTerm(one * 0.5, torch.zeros(2), one, one),
        "choice": LossTerm(choice_out * 0, torch.zeros(2), torch.zeros(2), torch.zeros(2)),  # nothing masked
    }
    total, parts = balance(terms, torch.zeros(2, dtype=torch.long))
    assert total.item() == pytest.approx(0.5)  # exp(0) * 0.5 + 0, and nothing from choice
    total.backward()
    grad = balance.log_var.grad
    assert grad[0].item() == pytest.approx(1 - 0.5) and grad[3].item() == 0.0  # choice's s_m is left alone
    # ... but its output stays in the graph with a zero gradient: every rank of a data-parallel
    # run reduces the same parameters' gradients, whatever its share of the batch masked
    assert choice_out.grad is not None and not choice_out.grad.any()
    assert balance.modality_weights() == {m: 1.0 for m in MODALITIES}


def _slice_norms(grad):
    return [grad[:, m].norm().item() for m in range(len(MODALITIES))]


@pytest.mark.parametrize("readout", [1.0, 0.0])
def test_gradnorm_gives_every_modality_the_same_gradient_norm_where_it_enters_the_trunk(readout):
    """At the shared representation each modality's gradient is scaled to the mean norm; the heads
    learn from their own terms unscaled. A zero-initialised spike readout passes no gradient to the
    trunk yet: its slice stays zero, the others are scaled among themselves."""
    data = random_trials(UNITS, 16, rate=0.3)
    idx = torch.arange(len(data.session))
    nulls = null_deviances(data, idx)
    batch = data.batch(idx)
    masks = draw_masks(len(idx), batch.spikes.shape[1], 0.3, torch.Generator().manual_seed(0))
    seen = {}

    def run(kind):
        torch.manual_seed(3)
        model = build_model(ModelConfig(**{**vars(TINY), "readout_init_scale": readout}), data.n_units)
        out = model(batch, masks)
        balance = LossBalance(kind, nulls=nulls)
        total, parts = balance(model.loss_terms(out, batch, masks), batch.session, out.shared)
        out.shared.register_hook(lambda g: seen.__setitem__(kind, g.clone()))  # after the balance's own hook
        total.backward()
        return model, balance, total, parts

    plain, _, total_null, _ = run("null")
    model, balance, total, _ = run("gradnorm")
    assert total.item() == pytest.approx(total_null.item())  # the loss is the null terms' sum
    raw, scaled = _slice_norms(seen["null"]), _slice_norms(seen["gradnorm"])
    had = [n > 0 for n in raw]
    assert had == [readout > 0] + [True] * (len(MODALITIES) - 1)
    mean = sum(n for n in raw if n > 0) / sum(had)
    assert all(s == pytest.approx(mean, rel=1e-4) if h else s == 0.0 for s, h in zip(scaled, had))
    assert max(raw) > 2 * min(n for n in raw if n > 0)  # the modalities' gradients did differ
    for m in range(len(MODALITIES)):  # each slice keeps its direction
        if had[m]:
            assert torch.allclose(seen["gradnorm"][:, m] * raw[m] / scaled[m], seen["null"][:, m], rtol=1e-3, atol=1e-9)
    weights = balance.modality_weights()
    for m, name in enumerate(MODALITIES):
        assert weights[name] == pytest.approx(mean / raw[m], rel=1e-4) if had[m] else math.isnan(weights[name])
    heads = dict(plain.sessions.named_parameters())
    for name, p in model.sessions.named_parameters():  # the heads' gradients are the unscaled terms'
        if name.startswith(("spike_head", "behaviour_heads")):
            assert torch.allclose(p.grad, heads[name].grad, rtol=1e-4, atol=1e-8), name


def _toy(names=("spikes", "wheel", "whisker", "choice")):
    """A stand-in for the shared representation, 2 trials x 5 modalities x 3 features, and the
    terms ``names`` on its slices: spikes 0.1 x², wheel 10 x, whisker -4 x, choice with nothing
    masked. (the representation's leaf, the representation, the terms, the gradients of the
    spike, wheel and whisker terms' means over the trials, unscaled)."""
    base = torch.randn(2, len(MODALITIES), 3, requires_grad=True)
    shared = base * 1.0
    one, none = torch.ones(2), torch.zeros(2)
    terms = {
        "spikes": LossTerm(0.1 * (shared[:, 0] ** 2).sum(-1), none, one, one),
        "wheel": LossTerm(10 * shared[:, 1].sum(-1), none, one, one),
        "whisker": LossTerm(-4 * shared[:, 2].sum(-1), none, one, one),
        "choice": LossTerm(shared[:, 3].sum(-1) * 0, none, none, none),
    }
    raw = [0.1 * base[:, 0].detach(), torch.full((2, 3), 5.0), torch.full((2, 3), -2.0)]
    return base, shared, {n: terms[n] for n in names}, raw


def _toy_backward(kind, names=("spikes", "wheel", "whisker", "choice")):
    """The ``kind`` balance's total of the :func:`_toy` terms ``names`` backpropagated. (the
    balance, the representation's gradient, the unscaled gradients of spikes, wheel and whisker)."""
    balance = LossBalance(kind, nulls=torch.ones(1, len(MODALITIES)))
    base, shared, terms, raw = _toy(names)
    total, _ = balance(terms, torch.zeros(2, dtype=torch.long), shared)
    total.backward()
    return balance, base.grad, raw


def test_gradnorm_leaves_a_modality_without_masked_tokens_out_and_needs_the_representation():
    balance = LossBalance("gradnorm", nulls=torch.ones(1, len(MODALITIES)))
    base, shared, terms, (g_spikes, g_wheel, _) = _toy(("spikes", "wheel", "choice"))  # choice: nothing masked
    total, _ = balance(terms, torch.zeros(2, dtype=torch.long), shared)
    total.backward()
    mean = (g_spikes.norm() + g_wheel.norm()) / 2
    assert torch.allclose(base.grad[:, 0], g_spikes * mean / g_spikes.norm(), rtol=1e-5)
    assert torch.allclose(base.grad[:, 1], g_wheel * mean / g_wheel.norm(), rtol=1e-5)
    assert not base.grad[:, 2:].any()
    weights = balance.modality_weights()
    assert math.isnan(weights["choice"]) and math.isnan(weights["block"])  # no step where they had a gradient
    assert weights["spikes"] == pytest.approx((mean / g_spikes.norm()).item(), rel=1e-5)
    with torch.no_grad():  # evaluation: nothing to scale, the null terms summed
        assert balance(terms, torch.zeros(2, dtype=torch.long), shared)[0].item() == pytest.approx(total.item())
    with pytest.raises(ValueError, match="shared representation"):
        balance(terms, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="shared representation"):
        balance(terms, torch.zeros(2, dtype=torch.long), shared[:, :2])


def test_gradnorm_groups_gives_the_neural_and_the_behavioural_gradient_the_same_norm():
    """Spikes' slice and the behaviours' slices together are scaled to the mean of the two
    groups' norms; within the behaviours the proportions of the summed terms are kept."""
    balance, grad, (g_spikes, g_wheel, g_whisker) = _toy_backward("gradnorm_groups")
    behaviour = torch.cat([g_wheel, g_whisker]).norm()
    mean = (g_spikes.norm() + behaviour) / 2
    assert torch.allclose(grad[:, 0], g_spikes * mean / g_spikes.norm(), rtol=1e-5)
    assert torch.allclose(grad[:, 1], g_wheel * mean / behaviour, rtol=1e-5)  # one factor for the group
    assert torch.allclose(grad[:, 2], g_whisker * mean / behaviour, rtol=1e-5)
    assert not grad[:, 3:].any()
    assert grad[:, 0].norm().item() == pytest.approx(grad[:, 1:].norm().item(), rel=1e-5)
    weights = balance.modality_weights()
    assert weights["spikes"] == pytest.approx((mean / g_spikes.norm()).item(), rel=1e-5)
    # the behaviours share one factor, recorded for those among the terms (block is not one)
    assert all(weights[m] == pytest.approx((mean / behaviour).item(), rel=1e-5) for m in BEHAVIOURS[:3])
    assert math.isnan(weights["block"])
    # a model trained on one group alone (an encoding-only model) is left as it is: the null terms
    alone, grad, (g_spikes, *_) = _toy_backward("gradnorm_groups", ("spikes",))
    assert torch.allclose(grad[:, 0], g_spikes, rtol=1e-5) and not grad[:, 1:].any()
    assert alone.modality_weights()["spikes"] == pytest.approx(1.0)


def test_gradnorm_lift_raises_the_gradients_below_the_mean_norm_and_leaves_the_others():
    balance, grad, raw = _toy_backward("gradnorm_lift", ("spikes", "wheel", "whisker"))
    norms = [g.norm() for g in raw]
    mean = sum(norms) / 3
    assert norms[0] < mean < norms[1] and norms[2] < mean  # two below the mean, one above
    for m, (g, n) in enumerate(zip(raw, norms)):
        expected = g * mean / n if n < mean else g
        assert torch.allclose(grad[:, m], expected, rtol=1e-5), MODALITIES[m]
    weights = balance.modality_weights()
    assert weights["wheel"] == 1.0 and weights["spikes"] == pytest.approx((mean / norms[0]).item(), rel=1e-5)


@pytest.mark.parametrize("kind", LOSS_BALANCES)
def test_a_behaviour_constant_in_one_session_is_left_out_of_the_relative_terms(kind):
    """Session 1's block is constant over its training trials (a session without blocks): its
    block term has no null deviance, so it is left out of the null-relative terms and the
    diagnostic, which read session 0 alone; nothing is infinite or NaN, gradients included."""
    data = random_trials([5, 6], 12)
    data.block[data.session == 1] = 1
    idx = torch.arange(len(data.session))
    nulls = null_deviances(data, idx)
    balance = LossBalance(kind, nulls=nulls, eids=["A", "B"])
    assert balance.left_out == {"B": ["block"]}
    model = build_model(TINY, data.n_units)
    batch = data.batch(idx)
    masks = draw_masks(len(idx), batch.spikes.shape[1], 0.3, torch.Generator().manual_seed(0))
    out = model(batch, masks)
    terms = model.loss_terms(out, batch, masks)
    total, parts = balance(terms, batch.session, out.shared)
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    own = data.session[idx] == 0
    block = terms["block"]
    expected = ((block.total - block.floor)[own] / nulls[0, 4].float()).sum() / block.tokens[own].sum()
    assert parts["block_vs_null"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss balance"):
        LossBalance("mgda")


def test_poisson_floor_is_the_nll_at_the_perfect_rate():
    y = torch.tensor([0.0, 1.0, 3.0])
    r = torch.log(y.clamp(min=1e-30))
    assert torch.allclose(poisson_floor(y), torch.exp(r) - y * r, atol=1e-6)


@pytest.mark.parametrize("kind", LOSS_BALANCES)
def test_training_records_each_modality_against_its_null(tmp_path, kind):
    data = random_trials(UNITS, 20, rate=0.3)
    cfg = TrainConfig(epochs=2, batch_size=8, max_lr=3e-3, val_every=1, progress=False, device="cpu", loss=kind)
    train(build_model(TINY, data.n_units), data, cfg, tmp_path)
    hist = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    for m in MODALITIES:
        assert all(math.isfinite(h[f"train_{m}_vs_null"]) for h in hist), m
    assert all(("weight_spikes" in h) == (kind in ("uncertainty", *GRADIENT_GROUPS)) for h in hist)
    if kind in GRADIENT_GROUPS:  # every modality had a gradient at the trunk in every epoch: a finite, positive factor
        assert all(math.isfinite(h[f"weight_{m}"]) and h[f"weight_{m}"] > 0 for h in hist for m in MODALITIES)


def test_learned_weights_resume_exactly(tmp_path):
    data = random_trials(UNITS, 20, rate=0.3)
    cfg = TrainConfig(
        epochs=3, batch_size=8, max_lr=3e-2, val_every=1, progress=False, device="cpu", loss="uncertainty"
    )
    torch.manual_seed(1)
    full = build_model(TINY, data.n_units)
    train(full, data, cfg, tmp_path / "full")
    torch.manual_seed(1)
    part = build_model(TINY, data.n_units)
    train(part, data, cfg, tmp_path / "part", stop_after_epoch=1)
    resumed = build_model(TINY, data.n_units)
    train(resumed, data, cfg, tmp_path / "part")
    read = lambda p: [json.loads(x) for x in (p / "history.jsonl").read_text().splitlines()]  # noqa: E731
    a, b = read(tmp_path / "full"), read(tmp_path / "part")
    assert [h["weight_wheel"] for h in a] == [h["weight_wheel"] for h in b]
    assert a[-1]["weight_wheel"] != 1.0  # the weights did move
    ckpt = torch.load(tmp_path / "full" / "model.pt", weights_only=False)
    assert set(ckpt["balance_state"]) == {"log_var"}
