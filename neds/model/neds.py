"""The NEDS model: session-specific tokenizers and heads around a shared masked transformer.

Token layout of one trial (T = 100 bins): ``[spikes | wheel | whisker | choice | block]``, each
modality T tokens, so 5T tokens in all. Rotary position embedding uses the time-bin index, so
tokens of different modalities at the same bin share a position.

The session-specific layers (the stitchers that turn each session's spikes and behaviour into
tokens, the session embedding and the output heads) live under one module, :attr:`NEDS.sessions`
(:class:`SessionLayers`), with the session vocabulary they are indexed by; everything outside it is
shared across sessions and is what fine-tuning copies. Each of them holds
stacked, zero-padded tensors of shape (S, ...) indexed by the session index of each trial, so a
batch mixing sessions runs as a few batched matrix products. Padded units are zero at the input,
their hidden units are masked, and they never reach a loss (see :meth:`NEDS.loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from neds.config import schema_defaults
from neds.model.balance import LossTerm, poisson_floor
from neds.model.base import Batch, SessionVocabulary, TrialModel
from neds.model.masking import Masks, draw_masks, eval_masks
from neds.vocab import (
    BEHAVIOURS,
    DECODING_MODE,
    DYNAMIC_BEHAVIOURS,
    ENCODING_MODE,
    MODALITIES,
    MODE_SCHEMES,
    MODES,
    MULTIMODAL_MODE,
    N_CLASSES,
    STATIC_BEHAVIOURS,
)

__all__ = [
    "ModelConfig",
    "NEDS",
    "SessionLayers",
    "SpikeStitcher",
    "BehaviourStitcher",
    "SessionEmbedding",
    "SpikeHead",
    "BehaviourHeads",
    "Batch",
    "Output",
    "MODES",
    "LOSS_PARTS",
    "model_summary",
]

LOSS_PARTS = MODALITIES
"""The terms of the loss: one per modality (:data:`neds.vocab.MODALITIES`)."""
# input value of the static behaviours' classes (choice -1/+1, block prior 0.2/0.5/0.8)
_CHOICE_VALUES = (-1.0, 1.0)
_BLOCK_VALUES = (0.2, 0.5, 0.8)


_DEFAULTS = schema_defaults("model")  # the schema is the one source of defaults


@dataclass
class ModelConfig:
    """Sizes and regularisation of the shared model (config section ``model``; each field's
    default and meaning are the schema's, ``neds/schema/config.schema.yaml``)."""

    hidden: int = _DEFAULTS["hidden"]
    n_heads: int = _DEFAULTS["n_heads"]
    mlp: int = _DEFAULTS["mlp"]
    n_layers: int = _DEFAULTS["n_layers"]
    dropout: float = _DEFAULTS["dropout"]
    token_dropout: float = _DEFAULTS["token_dropout"]
    attention_dropout: float = _DEFAULTS["attention_dropout"]
    readout_init_scale: float = _DEFAULTS["readout_init_scale"]
    stitcher_init_scale: float = _DEFAULTS["stitcher_init_scale"]
    n_bins: int = 100  # time bins per trial: set from the binned data (not a config key)
    rope_base: float = 10000.0  # base of the rotary position embedding (not a config key)

    def __post_init__(self) -> None:
        if self.hidden % self.n_heads or (self.hidden // self.n_heads) % 2:
            raise ValueError(
                f"hidden {self.hidden} must be divisible by n_heads {self.n_heads} into an even head size; "
                "fix model.hidden / model.n_heads"
            )


@dataclass
class Output:
    """Model predictions: spikes (B, T, N) log-rates per bin; wheel, whisker (B, T);
    choice (B, 2) and block (B, 3) logits; and ``shared`` (B, 5, T, H), the trunk's output, of
    which each modality's head reads its own tokens ``[:, m]`` alone (:data:`neds.vocab.MODALITIES`
    order; the loss balances of :data:`neds.vocab.GRADIENT_GROUPS` scale the modalities'
    gradients there)."""

    spikes: torch.Tensor
    wheel: torch.Tensor
    whisker: torch.Tensor
    choice: torch.Tensor
    block: torch.Tensor
    shared: torch.Tensor | None = None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout. On CUDA this is ``F.dropout``; on CPU the keep-mask is drawn as 16-bit
    integers, four per 64-bit random number, about 6x faster than ``F.dropout``'s Bernoulli
    sampler (bench/README.md), with the keep probability exact to 2**-16."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    keep = bits.view(torch.int16)[:n].view(x.shape) >= int(round(-32768 + p * 65536))
    return x * torch.where(keep, 1.0 / (1.0 - p), 0.0).to(x.dtype)


def _rope_table(n_bins: int, head_dim: int, base: float) -> torch.Tensor:
    """(T, D/2) complex rotations e^(i t theta_j) of rotary position embedding."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.arange(n_bins, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.polar(torch.ones_like(angles), angles)


class Block(nn.Module):
    """Pre-LayerNorm transformer block with rotary attention (scaled_dot_product_attention)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.ln1 = nn.LayerNorm(cfg.hidden)
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.ln2 = nn.LayerNorm(cfg.hidden)
        self.fc1 = nn.Linear(cfg.hidden, cfg.mlp)
        self.fc2 = nn.Linear(cfg.mlp, cfg.hidden)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """x (B, L, H); rope (L, D/2) complex rotation of each token's position."""
        b, length, h = x.shape
        heads, d = self.cfg.n_heads, h // self.cfg.n_heads
        qkv = self.qkv(self.ln1(x)).view(b, length, 3, heads, d // 2, 2)
        # rotary embedding of q and k in one pass: channel pairs as complex numbers times e^(i t theta)
        # (in float32: complex bfloat16 does not exist; a no-op without autocast)
        qk = torch.view_as_complex(qkv[:, :, :2].float()) * rope[:, None, None, :]
        q, k = torch.view_as_real(qk).to(qkv.dtype).view(b, length, 2, heads, d).permute(2, 0, 3, 1, 4)
        v = qkv[:, :, 2].reshape(b, length, heads, d).transpose(1, 2)
        p = self.cfg.attention_dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # bidirectional
        p_res = self.cfg.dropout
        x = x + dropout(self.proj(att.transpose(1, 2).reshape(b, length, h)), p_res, self.training)
        x = x + dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))), p_res, self.training)
        return x


def _uniform(shape: tuple[int, ...], fan_in: torch.Tensor | float) -> torch.Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like nn.Linear's init.

    fan_in : a number, or an (S,) tensor of per-session fan-ins for a tensor stacked over sessions
    along its first dim.
    """
    if isinstance(fan_in, torch.Tensor):
        bound = fan_in.clamp(min=1).float().rsqrt().view(-1, *([1] * (len(shape) - 1)))
    else:
        bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape) * 2 - 1) * bound


# ---------------------------------------------------------------------------------------- session layers
class SpikeStitcher(nn.Module):
    """Spike input layers of every session, Linear(N -> 2N), Softsign, Linear(2N -> H), stacked
    over sessions and zero-padded to the largest session's N.

    Parameters
    ----------
    n_units : (S,) long tensor, units of each session
    hidden : H
    init_scale : scale of the first layer's initial weights (nn.Linear's = 1)
    """

    def __init__(self, n_units: torch.Tensor, hidden: int, init_scale: float = 1.0):
        super().__init__()
        s, n = len(n_units), int(n_units.max())
        self.w1 = nn.Parameter(_uniform((s, n, 2 * n), n_units) * init_scale)
        self.b1 = nn.Parameter(_uniform((s, 2 * n), n_units))
        self.w2 = nn.Parameter(_uniform((s, 2 * n, hidden), 2 * n_units))
        self.b2 = nn.Parameter(_uniform((s, hidden), 2 * n_units))
        # (S, 2N): the hidden units a session has, switched off elsewhere after the Softsign
        self.register_buffer("hidden_valid", torch.arange(2 * n)[None, :] < 2 * n_units[:, None], persistent=False)

    def forward(self, spikes: torch.Tensor, unit_mask: torch.Tensor, session: torch.Tensor) -> torch.Tensor:
        """spikes (B, T, N), unit_mask (B, N) bool, session (B,) -> tokens (B, T, H)."""
        x = spikes * unit_mask[:, None, :].to(spikes.dtype)  # padded units are zero
        hid = torch.baddbmm(self.b1[session][:, None, :], x, self.w1[session])  # (B, T, 2N)
        hid = F.softsign(hid) * self.hidden_valid[session][:, None, :].to(hid.dtype)  # padded hidden units off
        return torch.baddbmm(self.b2[session][:, None, :], hid, self.w2[session])  # (B, T, H)


class BehaviourStitcher(nn.Module):
    """Behaviour input layers of every session, stacked over sessions.

    A dynamic behaviour (a value per bin) goes through Linear(1 -> 2) in every bin; a static one
    (one class per trial, input as its value) through Linear(1 -> 2T), a pair of hidden units per
    bin; then, after a Softsign, each behaviour through its own Linear(2 -> H).

    Parameters
    ----------
    n_sessions : S
    n_bins : T
    hidden : H
    """

    def __init__(self, n_sessions: int, n_bins: int, hidden: int):
        super().__init__()
        s, n_dyn, n_sta = n_sessions, len(DYNAMIC_BEHAVIOURS), len(STATIC_BEHAVIOURS)
        self.dynamic_w1 = nn.Parameter(_uniform((n_dyn, s, 2), 1))
        self.dynamic_b1 = nn.Parameter(_uniform((n_dyn, s, 2), 1))
        self.static_w1 = nn.Parameter(_uniform((n_sta, s, n_bins, 2), 1))
        self.static_b1 = nn.Parameter(_uniform((n_sta, s, n_bins, 2), 1))
        self.w2 = nn.Parameter(_uniform((len(BEHAVIOURS), s, 2, hidden), 2))
        self.b2 = nn.Parameter(_uniform((len(BEHAVIOURS), s, hidden), 2))
        self.register_buffer("choice_values", torch.tensor(_CHOICE_VALUES), persistent=False)
        self.register_buffer("block_values", torch.tensor(_BLOCK_VALUES), persistent=False)

    def forward(
        self,
        wheel: torch.Tensor,
        whisker: torch.Tensor,
        choice: torch.Tensor,
        block: torch.Tensor,
        session: torch.Tensor,
    ) -> torch.Tensor:
        """wheel, whisker (B, T) float; choice, block (B,) classes; session (B,) -> tokens (B, 4, T, H)
        in :data:`~neds.vocab.BEHAVIOURS` order."""
        s = session
        dyn_x = torch.stack((wheel, whisker), dim=1)  # (B, 2, T)
        dyn_w, dyn_b = self.dynamic_w1[:, s].transpose(0, 1), self.dynamic_b1[:, s].transpose(0, 1)  # (B, 2, 2)
        dyn = F.softsign(dyn_x[..., None] * dyn_w[:, :, None, :] + dyn_b[:, :, None, :])  # (B, 2, T, 2)
        sta_x = torch.stack((self.choice_values[choice], self.block_values[block]), dim=1)  # (B, 2)
        sta_w, sta_b = self.static_w1[:, s].transpose(0, 1), self.static_b1[:, s].transpose(0, 1)  # (B, 2, T, 2)
        sta = F.softsign(sta_x[..., None, None] * sta_w + sta_b)
        hid = torch.cat((dyn, sta), dim=1)  # (B, 4, T, 2)
        return torch.matmul(hid, self.w2[:, s].transpose(0, 1)) + self.b2[:, s].transpose(0, 1)[:, :, None, :]


class SessionEmbedding(nn.Module):
    """A learned H-vector per session, added to every token of the session's trials."""

    no_weight_decay = ("weight",)  # an embedding: see neds.train.param_groups

    def __init__(self, n_sessions: int, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_sessions, hidden) * 0.02)

    def forward(self, session: torch.Tensor) -> torch.Tensor:
        """session (B,) -> (B, H)."""
        return self.weight[session]


class SpikeHead(nn.Module):
    """Spike output layers of every session, Linear(H -> N) from a spike token to the log-rate of
    each unit in its bin, stacked over sessions and zero-padded to the largest session's N.

    Parameters
    ----------
    n_sessions : S
    hidden : H
    n_max : the largest session's N
    init_scale : scale of the initial weights (nn.Linear's = 1); the biases start at zero
    """

    def __init__(self, n_sessions: int, hidden: int, n_max: int, init_scale: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(_uniform((n_sessions, hidden, n_max), hidden) * init_scale)
        self.bias = nn.Parameter(torch.zeros(n_sessions, n_max))

    def forward(self, x: torch.Tensor, session: torch.Tensor) -> torch.Tensor:
        """x (B, T, H) spike tokens, session (B,) -> log-rates (B, T, N)."""
        return torch.baddbmm(self.bias[session][:, None, :], x, self.weight[session])


class BehaviourHeads(nn.Module):
    """Behaviour output layers of every session, stacked over sessions: Linear(H -> 1) on every
    token of a dynamic behaviour; for a static behaviour, a learned weighting of its T tokens
    (starting at their mean), then Linear(H -> classes).

    Parameters
    ----------
    n_sessions : S
    n_bins : T
    hidden : H
    """

    def __init__(self, n_sessions: int, n_bins: int, hidden: int):
        super().__init__()
        s, h, n_dyn = n_sessions, hidden, len(DYNAMIC_BEHAVIOURS)
        self.dynamic_w = nn.Parameter(_uniform((n_dyn, s, h), h))
        self.dynamic_b = nn.Parameter(torch.zeros(n_dyn, s))
        self.static_pool = nn.Parameter(torch.full((len(STATIC_BEHAVIOURS), s, n_bins), 1.0 / n_bins))
        self.choice_w = nn.Parameter(_uniform((s, h, N_CLASSES["choice"]), h))
        self.choice_b = nn.Parameter(torch.zeros(s, N_CLASSES["choice"]))
        self.block_w = nn.Parameter(_uniform((s, h, N_CLASSES["block"]), h))
        self.block_b = nn.Parameter(torch.zeros(s, N_CLASSES["block"]))

    def forward(self, x: torch.Tensor, session: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 4, T, H) behaviour tokens in :data:`~neds.vocab.BEHAVIOURS` order, session (B,) ->
        (wheel and whisker (B, 2, T), choice logits (B, 2), block logits (B, 3))."""
        s = session
        dyn = torch.einsum("bmth,bmh->bmt", x[:, :2], self.dynamic_w[:, s].transpose(0, 1))
        dyn = dyn + self.dynamic_b[:, s].transpose(0, 1)[..., None]  # (B, 2, T)
        pooled = torch.einsum("bmth,bmt->bmh", x[:, 2:], self.static_pool[:, s].transpose(0, 1))  # (B, 2, H)
        choice = torch.einsum("bh,bhc->bc", pooled[:, 0], self.choice_w[s]) + self.choice_b[s]
        block = torch.einsum("bh,bhc->bc", pooled[:, 1], self.block_w[s]) + self.block_b[s]
        return dyn, choice, block


class SessionLayers(SessionVocabulary):
    """Everything session-specific: the session vocabulary (:class:`~neds.model.base.SessionVocabulary`)
    and the layers indexed by it.

    Parameters
    ----------
    n_units : (S,) long tensor, units of each session (index = session index)
    eids : the session ids in the same order, or None for a vocabulary not yet named (training
        names it after its data)
    spike_stitcher, behaviour_stitcher, embedding, spike_head, behaviour_heads : the layers,
        built by :class:`NEDS` (which fixes the order of their random initial weights)
    """

    def __init__(
        self,
        n_units: torch.Tensor,
        eids: list[str] | None,
        spike_stitcher: SpikeStitcher,
        behaviour_stitcher: BehaviourStitcher,
        embedding: SessionEmbedding,
        spike_head: SpikeHead,
        behaviour_heads: BehaviourHeads,
    ):
        super().__init__(n_units, eids)
        self.spike_stitcher = spike_stitcher
        self.behaviour_stitcher = behaviour_stitcher
        self.embedding = embedding
        self.spike_head = spike_head
        self.behaviour_heads = behaviour_heads


# ---------------------------------------------------------------------------------------- model
class NEDS(TrialModel):
    """Multimodal masked transformer over spikes and behaviour.

    Parameters
    ----------
    cfg : ModelConfig
    n_units : list of int, units of each session in the vocabulary (index = session index)
    mode : 'multimodal', 'encoding' (behaviour in, spikes out) or 'decoding' (spikes in,
        behaviour out). The mode only decides which outputs carry a loss; the masks decide which
        inputs are seen (see :mod:`neds.model.masking`).
    eids : the session ids of the vocabulary, in the same order (None: named when trained)

    Attributes
    ----------
    sessions : SessionLayers, every session-specific layer and the vocabulary; the rest of the
        model (modality and time embeddings, mask token, transformer blocks, final norm) is shared
    """

    architecture = "neds"
    shared_output = True
    Config = ModelConfig
    modes = (MULTIMODAL_MODE, ENCODING_MODE, DECODING_MODE)
    no_weight_decay = ("modality_emb", "time_emb", "mask_token")  # embeddings: see neds.train.param_groups

    def __init__(
        self, cfg: ModelConfig, n_units: list[int], mode: str = MULTIMODAL_MODE, eids: list[str] | None = None
    ):
        super().__init__()
        self.check_mode(mode)
        if not n_units or min(n_units) < 1:
            raise ValueError(f"every session needs at least one unit, got {n_units}")
        self.cfg, self.mode = cfg, mode
        h, t, s, m = cfg.hidden, cfg.n_bins, len(n_units), len(MODALITIES)
        units = torch.tensor(n_units, dtype=torch.long)
        # The layers are built in this order, which fixes the order of their random initial weights
        # (for a given seed, the weights of the model before its session layers were grouped); the
        # session layers are grouped under self.sessions at the end.
        spike_stitcher = SpikeStitcher(units, h, cfg.stitcher_init_scale)
        behaviour_stitcher = BehaviourStitcher(s, t, h)
        self.modality_emb = nn.Parameter(torch.randn(m, h) * 0.02)
        self.time_emb = nn.Parameter(torch.randn(t, h) * 0.02)
        embedding = SessionEmbedding(s, h)
        self.mask_token = nn.Parameter(torch.randn(h) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(h)
        # (5T, D/2): a token's position is its time bin, whatever its modality
        self.register_buffer("rope", _rope_table(t, h // cfg.n_heads, cfg.rope_base).repeat(m, 1), persistent=False)
        spike_head = SpikeHead(s, h, max(n_units), cfg.readout_init_scale)
        behaviour_heads = BehaviourHeads(s, t, h)
        self.sessions = SessionLayers(
            units, eids, spike_stitcher, behaviour_stitcher, embedding, spike_head, behaviour_heads
        )

    # ------------------------------------------------------------------ shared and session-specific
    def canonical_parameters(self) -> list[nn.Parameter]:
        """Every parameter once, in the model's canonical order: the token layers (spike and
        behaviour stitchers, modality and time embeddings, session embedding, mask token), the
        other session layers (the heads, then any added later), then the shared modules (the
        transformer blocks, the final norm, then any added later).

        Gradient clipping reduces the gradients' norms in this order. The total norm is a float
        sum, so its last bit, and with it every clipped gradient, depends on the order; this is
        the order of :meth:`parameters` before the session layers were grouped under
        :attr:`sessions`, so training runs reproduce bit for bit across that change.
        """
        sl = self.sessions
        order = [
            *sl.spike_stitcher.parameters(),
            *sl.behaviour_stitcher.parameters(),
            self.modality_emb,
            self.time_emb,
            *sl.embedding.parameters(),
            self.mask_token,
            *sl.parameters(),
            *self.parameters(),
        ]
        return list({id(p): p for p in order}.values())  # the first place of each

    def transferable_session_state(self) -> dict[str, int]:
        """The session layers without a unit axis, name -> session axis: the behaviour stitchers
        and heads, the session embedding and the spike stitcher's output bias (the spike
        stitcher's other layers and the spike head are per unit)."""
        stitcher = ("dynamic_w1", "dynamic_b1", "static_w1", "static_b1", "w2", "b2")  # (behaviour, S, ...)
        return {
            "sessions.embedding.weight": 0,
            "sessions.spike_stitcher.b2": 0,
            **{f"sessions.behaviour_stitcher.{k}": 1 for k in stitcher},
            **{f"sessions.behaviour_heads.{k}": 1 for k in ("dynamic_w", "dynamic_b", "static_pool")},
            **{f"sessions.behaviour_heads.{k}": 0 for k in ("choice_w", "choice_b", "block_w", "block_b")},
        }

    @torch.no_grad()
    def init_spike_bias(self, log_rates: torch.Tensor) -> None:
        self.sessions.spike_head.bias.copy_(log_rates.to(self.sessions.spike_head.bias))

    # ------------------------------------------------------------------ forward
    def tokenize(self, batch: Batch, masks: Masks) -> torch.Tensor:
        """Input tokens (B, 5T, H): stitched values, mask token where masked, plus embeddings."""
        s, sl = batch.session, self.sessions
        b, t, _ = batch.spikes.shape
        m = len(MODALITIES)
        spk = sl.spike_stitcher(batch.spikes, batch.unit_mask, s)  # (B, T, H)
        beh = sl.behaviour_stitcher(batch.wheel, batch.whisker, batch.choice, batch.block, s)  # (B, 4, T, H)
        tokens = torch.cat((spk[:, None], beh), dim=1)  # (B, 5, T, H)
        masked = torch.cat((masks.spikes[:, None], masks.behaviour), dim=1)  # (B, 5, T)
        tokens = torch.where(masked[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens = tokens + self.modality_emb[None, :, None, :] + self.time_emb[None, None, :, :]
        tokens = tokens + sl.embedding(s)[:, None, None, :]
        tokens = tokens.reshape(b, m * t, -1)
        if self.training and self.cfg.token_dropout > 0:  # drop whole tokens
            keep = torch.rand(b, m * t, 1, device=tokens.device) >= self.cfg.token_dropout
            tokens = tokens * keep / (1.0 - self.cfg.token_dropout)
        return tokens

    def forward(self, batch: Batch, masks: Masks) -> Output:
        """Predictions for every token; the loss selects the masked ones."""
        s = batch.session
        b, t, _ = batch.spikes.shape
        if t != self.cfg.n_bins:
            raise ValueError(f"batch has {t} time bins, the model {self.cfg.n_bins}")
        x = self.tokenize(batch, masks)
        for block in self.blocks:
            x = block(x, self.rope)
        x = self.ln_f(x).view(b, len(MODALITIES), t, -1)
        spikes = self.sessions.spike_head(x[:, 0], s)  # (B, T, N)
        dyn, choice, block = self.sessions.behaviour_heads(x[:, 1:], s)
        return Output(spikes=spikes, wheel=dyn[:, 0], whisker=dyn[:, 1], choice=choice, block=block, shared=x)

    # ------------------------------------------------------------------ training and prediction
    def draw_masks(
        self, n_trials: int, n_bins: int, ratio: float, generator: torch.Generator, schemes: tuple[str, ...] | None
    ) -> Masks:
        """Multi-task masks (:func:`neds.model.masking.draw_masks`), a scheme per trial from ``schemes``
        (None: the schemes of the model's mode)."""
        return draw_masks(n_trials, n_bins, ratio, generator, schemes or MODE_SCHEMES[self.mode])

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Encoding (every spike token masked, behaviour seen) and decoding (spikes seen, every
        behaviour token masked) predictions, those of the model's mode."""
        b, t = batch.spikes.shape[:2]
        device = batch.spikes.device
        pred: dict[str, torch.Tensor] = {}
        if self.mode in (MULTIMODAL_MODE, ENCODING_MODE):
            pred["rate"] = torch.exp(self(batch, eval_masks("encoding", b, t).to(device)).spikes.float())
        if self.mode in (MULTIMODAL_MODE, DECODING_MODE):
            out = self(batch, eval_masks("decoding", b, t).to(device))
            pred["wheel"], pred["whisker"] = out.wheel.float(), out.whisker.float()
            pred["choice_prob"] = torch.softmax(out.choice.float(), -1)
            pred["block_prob"] = torch.softmax(out.block.float(), -1)
        return pred

    # ------------------------------------------------------------------ loss
    def loss_terms(self, out: Output, batch: Batch, masks: Masks) -> dict[str, LossTerm]:
        """Each modality's loss over each trial's masked tokens (:class:`~neds.model.balance.LossTerm`).

        Spikes: a spike token is one (trial, bin) of the whole population, so its loss is the
        Poisson NLL (log-rate input) summed over the session's real units. Wheel, whisker: squared
        error per masked bin. Choice, block: cross-entropy of a trial whose token is masked. The
        encoding model has only the spike term, the decoding model only the behaviours'. Unmasked
        tokens and padded units contribute nothing.
        """
        terms: dict[str, LossTerm] = {}
        if self.mode in (MULTIMODAL_MODE, ENCODING_MODE):
            rate = out.spikes.float()
            real = batch.unit_mask[:, None, :].to(rate.dtype)
            nll = ((torch.exp(rate) - batch.spikes * rate) * real).sum(-1)  # (B, T)
            floor = (poisson_floor(batch.spikes) * real).sum(-1)
            terms["spikes"] = LossTerm.of(nll, masks.spikes, batch.unit_mask.sum(-1).to(rate.dtype), floor)
        if self.mode in (MULTIMODAL_MODE, DECODING_MODE):
            n_bins = batch.spikes.shape[1]
            for i, name in enumerate(DYNAMIC_BEHAVIOURS):
                err = (getattr(out, name).float() - getattr(batch, name)) ** 2
                terms[name] = LossTerm.of(err, masks.behaviour[:, i])
            for i, name in enumerate(STATIC_BEHAVIOURS, start=len(DYNAMIC_BEHAVIOURS)):
                ce = F.cross_entropy(getattr(out, name).float(), getattr(batch, name), reduction="none")
                terms[name] = LossTerm.of(ce, masks.behaviour[:, i, 0], float(n_bins))  # whole-token flag
        return terms


def model_summary(model: TrialModel) -> dict:
    """Sizes of a model, for logs and checkpoints (:meth:`~neds.model.base.TrialModel.summary`)."""
    return model.summary()
