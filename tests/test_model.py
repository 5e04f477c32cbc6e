"""NEDS model and multi-task masking: shapes, mask table, loss selection, batched session layers."""

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from neds.data.dataset import random_trials
from neds.model.masking import BEHAVIOURS, SCHEMES, draw_masks, eval_masks, scheme_masks
from neds.model.neds import NEDS, ModelConfig, SpikeHead, dropout
from neds.train import param_groups

TINY = ModelConfig(hidden=32, n_heads=4, mlp=64, n_layers=2, dropout=0.0, token_dropout=0.0)
UNITS = [7, 12, 5]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def batch_of(data, idx):
    return data.batch(torch.as_tensor(idx))


@pytest.mark.parametrize("mode", NEDS.modes)
def test_shapes_every_mode(mode):
    data = random_trials(UNITS, 4)
    model = NEDS(TINY, UNITS, mode)
    batch = batch_of(data, [0, 5, 9, 11])  # three sessions in one batch
    masks = draw_masks(4, 100, 0.3, torch.Generator().manual_seed(0))
    out = model(batch, masks)
    assert out.spikes.shape == (4, 100, 12)
    assert out.wheel.shape == out.whisker.shape == (4, 100)
    assert out.choice.shape == (4, 2) and out.block.shape == (4, 3)
    loss, parts = model.loss(out, batch, masks)
    assert loss.ndim == 0 and torch.isfinite(loss)
    expected = {
        "multimodal": {"spikes", "wheel", "whisker", "choice", "block"},
        "encoding": {"spikes"},
        "decoding": {"wheel", "whisker", "choice", "block"},
    }[mode]
    assert set(parts) == expected


def test_each_scheme_masks_what_the_table_says():
    gen = torch.Generator().manual_seed(1)
    b, t = 200, 100
    for i, name in enumerate(SCHEMES):
        m = scheme_masks(torch.full((b,), i), t, 0.3, gen)
        spikes, beh = m.spikes, m.behaviour  # (B, T), (B, 4, T)
        dyn, stat = beh[:, :2], beh[:, 2:]
        # static behaviours are masked as a whole
        assert (stat == stat[..., :1]).all()
        if name == "neural":
            assert spikes.all() and not beh.any()
        elif name == "behavioural":
            assert not spikes.any() and beh.all()
        elif name == "within_neural":
            assert not beh.any() and spikes.any(1).all() and not spikes.all(1).any()
            assert 0.2 < spikes.float().mean() < 0.4
        elif name == "within_behavioural":
            assert not spikes.any() and dyn.any(2).all()
            assert not (dyn[:, 0] == dyn[:, 1]).all()  # independent per behaviour
            assert 0.2 < dyn.float().mean() < 0.4 and 0.2 < stat[..., 0].float().mean() < 0.4
        elif name == "cross_modal":
            assert spikes.any(1).all()
            assert (dyn[:, 0] == spikes).all() and (dyn[:, 1] == spikes).all()  # the same bins
            assert 0.2 < stat[..., 0].float().mean() < 0.4


def test_draw_masks_mixes_schemes_per_trial_and_restricts():
    gen = torch.Generator().manual_seed(2)
    m = draw_masks(500, 100, 0.3, gen)
    counts = torch.bincount(m.scheme, minlength=5)
    assert (counts > 60).all()  # each of the five schemes drawn about 100 times
    # each trial its own mask: not all trials equal (the paper-time defect copied the first one)
    assert not (m.spikes == m.spikes[0]).all()
    enc = draw_masks(50, 100, 0.3, gen, ("neural",))
    assert enc.spikes.all() and not enc.behaviour.any()
    with pytest.raises(ValueError, match="unknown masking"):
        draw_masks(4, 100, 0.3, gen, ("everything",))


def test_eval_masks():
    enc = eval_masks("encoding", 3, 100)
    assert enc.spikes.all() and not enc.behaviour.any()
    dec = eval_masks("decoding", 3, 100)
    assert not dec.spikes.any() and dec.behaviour.all()
    one = eval_masks("encoding_from", 3, 100, keep="wheel")
    assert one.spikes.all() and not one.behaviour[:, 0].any() and one.behaviour[:, 1:].all()
    with pytest.raises(ValueError):
        eval_masks("encoding_from", 3, 100, keep="pupil")


def test_loss_ignores_unmasked_targets_and_padded_units():
    data = random_trials(UNITS, 4)
    model = NEDS(TINY, UNITS, "multimodal").eval()
    batch = batch_of(data, [0, 4, 8, 9])
    masks = draw_masks(4, 100, 0.3, torch.Generator().manual_seed(3))
    out = model(batch, masks)
    loss, _ = model.loss(out, batch, masks)
    # changing targets where nothing is masked leaves the loss unchanged (outputs held fixed)
    changed = batch_of(data, [0, 4, 8, 9])
    changed.spikes[~masks.spikes] += 3.0
    changed.wheel[~masks.behaviour[:, 0]] += 0.5
    changed.whisker[~masks.behaviour[:, 1]] -= 0.5
    changed.choice[~masks.behaviour[:, 2, 0]] = 1 - changed.choice[~masks.behaviour[:, 2, 0]]
    changed.block[~masks.behaviour[:, 3, 0]] = (changed.block[~masks.behaviour[:, 3, 0]] + 1) % 3
    assert torch.equal(model.loss(out, changed, masks)[0], loss)
    # padded units, as inputs and as targets, change nothing at all
    padded = batch_of(data, [0, 4, 8, 9])
    padded.spikes[~padded.unit_mask[:, None, :].expand_as(padded.spikes)] = 9.0
    out_p = model(padded, masks)
    assert torch.allclose(model.loss(out_p, padded, masks)[0], loss, atol=1e-6)
    # but a masked target does count
    hit = batch_of(data, [0, 4, 8, 9])
    hit.spikes[masks.spikes[:, :, None].expand_as(hit.spikes) & hit.unit_mask[:, None, :]] += 1.0
    assert not torch.allclose(model.loss(out, hit, masks)[0], loss)


def test_loss_values_by_hand():
    """Spike loss: Poisson NLL summed over the session's units, mean over masked tokens; weights
    scale each modality's term; parts stay unweighted."""
    data = random_trials(UNITS, 2)
    model = NEDS(TINY, UNITS, "multimodal").eval()
    batch = batch_of(data, [0, 2])  # sessions 0 (7 units) and 1 (12 units)
    b, t, n = batch.spikes.shape
    out = model(batch, eval_masks("decoding", b, t))
    out.spikes = torch.full((b, t, n), -1.0)  # log-rate -1 everywhere
    spikes = torch.zeros(b, t, dtype=torch.bool)
    spikes[0, 3] = spikes[1, 5] = spikes[1, 6] = True
    masks = eval_masks("encoding", b, t)
    masks.spikes = spikes

    def nll(k, units):
        return sum(float(torch.exp(torch.tensor(-1.0)) + c) for c in batch.spikes[k[0], k[1], :units])

    expected = (nll((0, 3), 7) + nll((1, 5), 12) + nll((1, 6), 12)) / 3
    _, parts = model.loss(out, batch, masks)
    assert parts["spikes"].item() == pytest.approx(expected, rel=1e-5)
    weighted, parts = model.loss(out, batch, masks, {"spikes": 0.5, "choice": 0.0})
    assert weighted.item() == pytest.approx(0.5 * expected, rel=1e-5)  # behaviour is visible: only spikes count
    with pytest.raises(ValueError, match="unknown loss weights"):
        model.loss(out, batch, masks, {"pupil": 1.0})


def test_batched_session_layers_equal_a_per_session_loop():
    data = random_trials(UNITS, 3)
    model = NEDS(TINY, UNITS, "multimodal").eval()
    idx = [0, 3, 6, 1, 7]
    batch = batch_of(data, idx)
    masks = draw_masks(len(idx), 100, 0.3, torch.Generator().manual_seed(4))
    out = model(batch, masks)
    tokens = model.tokenize(batch, masks).view(len(idx), 5, 100, -1)
    for row, trial in enumerate(idx):
        s, n = int(data.session[trial]), UNITS[int(data.session[trial])]
        x = data.spikes[trial, :, :n].float()  # (T, N): the session's own units, no padding
        stitcher = model.sessions.spike_stitcher
        lin1 = F.linear(x, stitcher.w1[s, :n, : 2 * n].T, stitcher.b1[s, : 2 * n])
        tok = F.linear(F.softsign(lin1), stitcher.w2[s, : 2 * n].T, stitcher.b2[s])
        emb = model.modality_emb[0] + model.time_emb + model.sessions.embedding.weight[s]
        expected = torch.where(masks.spikes[row][:, None], model.mask_token, tok) + emb
        torch.testing.assert_close(tokens[row, 0], expected, rtol=1e-5, atol=1e-5)
        # the same trial alone gives the same outputs as inside the mixed batch
        single = model(
            batch_of(data, [trial]),
            type(masks)(masks.spikes[row : row + 1], masks.behaviour[row : row + 1], masks.scheme[row : row + 1]),
        )
        torch.testing.assert_close(single.spikes[0, :, :n], out.spikes[row, :, :n], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(single.choice[0], out.choice[row], rtol=1e-4, atol=1e-5)


def test_rotary_positions_shared_across_modalities():
    """Attention depends on the time bin of a token, not on its place in the sequence."""
    model = NEDS(TINY, [3], "multimodal").eval()
    rope = model.rope  # (5T, D/2)
    assert torch.equal(rope[:100], rope[100:200]) and torch.equal(rope[:100], rope[400:])
    assert not torch.equal(rope[0], rope[1])


def test_cpu_dropout_keep_rate_and_scale():
    x = torch.ones(400, 1000)
    y = dropout(x, 0.4, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.6) < 0.01
    assert torch.allclose(y[kept], torch.tensor(1 / 0.6))
    assert dropout(x, 0.4, False) is x


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="n_heads"):
        ModelConfig(hidden=30, n_heads=4)
    with pytest.raises(ValueError, match="mode"):
        NEDS(TINY, [3], "both")
    with pytest.raises(ValueError, match="at least one unit"):
        NEDS(TINY, [3, 0])


def test_behaviour_order():
    assert BEHAVIOURS == ("wheel", "whisker", "choice", "block")


def test_bf16_autocast_forward_backward():
    """The CUDA path runs under bfloat16 autocast; the same code must work there (checked on CPU)."""
    data = random_trials(UNITS, 3)
    model = NEDS(TINY, UNITS, "multimodal")
    batch = batch_of(data, [0, 3, 6])
    masks = draw_masks(3, 100, 0.3, torch.Generator().manual_seed(5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch, masks)
        loss, _ = model.loss(out, batch, masks)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_init_scales_of_the_unit_layers():
    torch.manual_seed(0)
    ref = NEDS(TINY, [7, 5])
    torch.manual_seed(0)
    zero = NEDS(ModelConfig(**{**vars(TINY), "readout_init_scale": 0.0, "stitcher_init_scale": 0.5}), [7, 5])
    assert torch.count_nonzero(zero.sessions.spike_head.weight) == 0
    assert torch.allclose(zero.sessions.spike_stitcher.w1, 0.5 * ref.sessions.spike_stitcher.w1)
    # the other weights are drawn as before: only the two scaled tensors differ
    for (name, a), b in zip(ref.state_dict().items(), zero.state_dict().values()):
        if name not in ("sessions.spike_head.weight", "sessions.spike_stitcher.w1"):
            assert torch.equal(a, b), name
    # a zero readout still learns: its gradient does not vanish
    batch = random_trials([7, 5], 4).batch(torch.arange(8))
    masks = draw_masks(8, 100, 0.3, torch.Generator().manual_seed(0), ("neural",))
    zero.loss(zero(batch, masks), batch, masks)[0].backward()
    assert zero.sessions.spike_head.weight.grad.abs().sum() > 0


SESSION_TOKEN_LAYERS = [
    "sessions.spike_stitcher.w1",
    "sessions.spike_stitcher.b1",
    "sessions.spike_stitcher.w2",
    "sessions.spike_stitcher.b2",
    "sessions.behaviour_stitcher.dynamic_w1",
    "sessions.behaviour_stitcher.dynamic_b1",
    "sessions.behaviour_stitcher.static_w1",
    "sessions.behaviour_stitcher.static_b1",
    "sessions.behaviour_stitcher.w2",
    "sessions.behaviour_stitcher.b2",
]
SESSION_HEADS = [
    "sessions.spike_head.weight",
    "sessions.spike_head.bias",
    "sessions.behaviour_heads.dynamic_w",
    "sessions.behaviour_heads.dynamic_b",
    "sessions.behaviour_heads.static_pool",
    "sessions.behaviour_heads.choice_w",
    "sessions.behaviour_heads.choice_b",
    "sessions.behaviour_heads.block_w",
    "sessions.behaviour_heads.block_b",
]


def test_everything_under_sessions_is_left_out_of_the_shared_weights():
    model = NEDS(TINY, UNITS)
    shared = model.shared_state_dict()
    assert {"modality_emb", "time_emb", "mask_token", "blocks.1.fc2.weight", "ln_f.bias"} <= set(shared)
    assert not any(k.startswith("sessions.") for k in shared)
    session_numel = sum(p.numel() for n, p in model.named_parameters() if n.startswith("sessions."))
    assert model.n_shared_parameters() == sum(p.numel() for p in model.parameters()) - session_numel
    n_shared = model.n_shared_parameters()
    # a session-specific layer added later is session-specific by where it lives: nothing to list
    model.sessions.pupil_w = nn.Parameter(torch.zeros(len(UNITS), TINY.hidden))
    model.sessions.pupil_head = SpikeHead(len(UNITS), TINY.hidden, 1)
    assert model.shared_state_dict().keys() == shared.keys() and model.n_shared_parameters() == n_shared
    assert {"sessions.pupil_w", "sessions.pupil_head.weight"} <= set(model.state_dict())


def test_canonical_parameter_order():
    """Every parameter once, in the order gradient clipping reduces them (the order of the model
    before its session layers were grouped, so that training runs reproduce bit for bit)."""
    model = NEDS(TINY, UNITS)
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for p in model.canonical_parameters()]
    transformer = [n for n, _ in model.named_parameters() if n.startswith(("blocks.", "ln_f."))]
    assert order == [
        *SESSION_TOKEN_LAYERS,
        "modality_emb",
        "time_emb",
        "sessions.embedding.weight",
        "mask_token",
        *SESSION_HEADS,
        *transformer,
    ]
    model.sessions.pupil_w = nn.Parameter(torch.zeros(len(UNITS), TINY.hidden))
    order = [p for p in model.canonical_parameters()]
    assert len(order) == len(list(model.parameters())) and {id(p) for p in order} == {id(p) for p in model.parameters()}


def test_weight_decay_groups():
    """Decay on every matrix and stacked session tensor (per-session biases included), none on
    vectors and on the embeddings the modules declare."""
    model = NEDS(TINY, UNITS)
    decay, no_decay = param_groups(model, 0.1)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, not_decayed = ({names[id(p)] for p in g["params"]} for g in (decay, no_decay))
    linears = {f"blocks.{i}.{layer}.weight" for i in range(TINY.n_layers) for layer in ("qkv", "proj", "fc1", "fc2")}
    assert decayed == set(SESSION_TOKEN_LAYERS) | set(SESSION_HEADS) | linears
    assert not_decayed == set(names.values()) - decayed
    assert {"modality_emb", "time_emb", "mask_token", "sessions.embedding.weight", "ln_f.weight"} <= not_decayed


def test_session_vocabulary_round_trips_through_the_state_dict():
    eids = ["eid-a", "eid-b", "eid-c"]
    model = NEDS(TINY, UNITS, eids=eids)
    state = model.state_dict()
    assert "sessions._extra_state" in state and "sessions._extra_state" not in model.shared_state_dict()
    assert all(torch.is_tensor(v) for v in state.values())  # state-dict readers may assume tensors
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    unnamed = NEDS(TINY, UNITS)
    assert unnamed.eids is None
    unnamed.load_state_dict(torch.load(buffer))
    assert unnamed.eids == eids and unnamed.n_units.tolist() == UNITS
    with pytest.raises(ValueError, match="3 distinct ids"):
        NEDS(TINY, UNITS, eids=["eid-a", "eid-b"])
    with pytest.raises(ValueError, match="3 distinct ids"):
        NEDS(TINY, UNITS, eids=["eid-a", "eid-a", "eid-b"])
