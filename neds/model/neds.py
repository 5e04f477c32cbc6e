"""The NEDS model: session-specific tokenizers and heads around a shared masked transformer.

Token layout of one trial (T = 100 bins): ``[spikes | wheel | whisker | choice | block]``, each
modality T tokens, so 5T tokens in all. Rotary position embedding uses the time-bin index, so
tokens of different modalities at the same bin share a position.

Session-specific layers are stacked, zero-padded tensors indexed by the session index of each
trial, so a batch mixing sessions runs as a few batched matrix products. Padded units are zero at
the input, their hidden units are masked, and they never reach a loss (see :meth:`NEDS.loss`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from neds.model.masking import Masks

__all__ = ["ModelConfig", "NEDS", "Batch", "Output", "MODES", "LOSS_PARTS"]

MODES = ("multimodal", "encoding", "decoding")
LOSS_PARTS = ("spikes", "wheel", "whisker", "choice", "block")
N_CLASSES = {"choice": 2, "block": 3}
# input value of the static behaviours' classes (choice -1/+1, block prior 0.2/0.5/0.8)
_CHOICE_VALUES = (-1.0, 1.0)
_BLOCK_VALUES = (0.2, 0.5, 0.8)


@dataclass
class ModelConfig:
    """Sizes and regularisation of the shared model."""

    hidden: int = 256
    n_heads: int = 8
    mlp: int = 512
    n_layers: int = 5
    dropout: float = 0.4
    token_dropout: float = 0.2
    attention_dropout: float = 0.0  # dropout on attention probabilities; > 0 disables the fused CPU kernel
    readout_init_scale: float = 1.0  # scale of the spike output layer's initial weights (nn.Linear's = 1)
    stitcher_init_scale: float = 1.0  # scale of the spike input layer's initial per-unit weights
    n_bins: int = 100
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        if self.hidden % self.n_heads or (self.hidden // self.n_heads) % 2:
            raise ValueError(
                f"hidden {self.hidden} must be divisible by n_heads {self.n_heads} into an even head size; "
                "fix model.hidden / model.n_heads"
            )


@dataclass
class Batch:
    """A batch of trials, possibly from several sessions.

    spikes (B, T, N) float counts, zero on padded units; unit_mask (B, N) bool, True on real units;
    wheel, whisker (B, T) float; choice (B,) long in {0, 1}; block (B,) long in {0, 1, 2};
    session (B,) long, index into the model's session vocabulary.
    """

    spikes: torch.Tensor
    unit_mask: torch.Tensor
    wheel: torch.Tensor
    whisker: torch.Tensor
    choice: torch.Tensor
    block: torch.Tensor
    session: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "Batch":
        return Batch(**{k: v.to(device, non_blocking=non_blocking) for k, v in vars(self).items()})


@dataclass
class Output:
    """Model predictions: spikes (B, T, N) log-rates per bin; wheel, whisker (B, T);
    choice (B, 2) and block (B, 3) logits."""

    spikes: torch.Tensor
    wheel: torch.Tensor
    whisker: torch.Tensor
    choice: torch.Tensor
    block: torch.Tensor


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


class NEDS(nn.Module):
    """Multimodal masked transformer over spikes and behaviour.

    Parameters
    ----------
    cfg : ModelConfig
    n_units : list of int, units of each session in the vocabulary (index = session index)
    mode : 'multimodal', 'encoding' (behaviour in, spikes out) or 'decoding' (spikes in,
        behaviour out). The mode only decides which outputs carry a loss; the masks decide which
        inputs are seen (see :mod:`neds.model.masking`).
    """

    def __init__(self, cfg: ModelConfig, n_units: list[int], mode: str = "multimodal"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        if not n_units or min(n_units) < 1:
            raise ValueError(f"every session needs at least one unit, got {n_units}")
        self.cfg, self.mode = cfg, mode
        h, t, s = cfg.hidden, cfg.n_bins, len(n_units)
        n_max = max(n_units)
        self.register_buffer("n_units", torch.tensor(n_units, dtype=torch.long), persistent=True)
        self.register_buffer("unit_valid", torch.arange(n_max)[None, :] < self.n_units[:, None], persistent=False)
        self.register_buffer(
            "hidden_valid", torch.arange(2 * n_max)[None, :] < 2 * self.n_units[:, None], persistent=False
        )
        # session-specific spike stitcher: Linear(N -> 2N), Softsign, Linear(2N -> H)
        fan = self.n_units
        self.spk_w1 = nn.Parameter(_uniform((s, n_max, 2 * n_max), fan) * cfg.stitcher_init_scale)
        self.spk_b1 = nn.Parameter(_uniform((s, 2 * n_max), fan))
        self.spk_w2 = nn.Parameter(_uniform((s, 2 * n_max, h), 2 * fan))
        self.spk_b2 = nn.Parameter(_uniform((s, h), 2 * fan))
        # behaviour stitchers: dynamic Linear(1 -> 2) per bin, static Linear(1 -> 2T); then Linear(2 -> H)
        self.dyn_w1 = nn.Parameter(_uniform((2, s, 2), 1))
        self.dyn_b1 = nn.Parameter(_uniform((2, s, 2), 1))
        self.sta_w1 = nn.Parameter(_uniform((2, s, t, 2), 1))
        self.sta_b1 = nn.Parameter(_uniform((2, s, t, 2), 1))
        self.beh_w2 = nn.Parameter(_uniform((4, s, 2, h), 2))
        self.beh_b2 = nn.Parameter(_uniform((4, s, h), 2))
        # embeddings and mask token
        self.modality_emb = nn.Parameter(torch.randn(5, h) * 0.02)
        self.time_emb = nn.Parameter(torch.randn(t, h) * 0.02)
        self.session_emb = nn.Parameter(torch.randn(s, h) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(h) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(h)
        # (5T, D/2): a token's position is its time bin, whatever its modality
        self.register_buffer("rope", _rope_table(t, h // cfg.n_heads, cfg.rope_base).repeat(5, 1), persistent=False)
        # session-specific heads
        self.spk_out_w = nn.Parameter(_uniform((s, h, n_max), h) * cfg.readout_init_scale)
        self.spk_out_b = nn.Parameter(torch.zeros(s, n_max))
        self.dyn_out_w = nn.Parameter(_uniform((2, s, h), h))
        self.dyn_out_b = nn.Parameter(torch.zeros(2, s))
        self.sta_pool = nn.Parameter(torch.full((2, s, t), 1.0 / t))  # weighting over the T tokens
        self.choice_w = nn.Parameter(_uniform((s, h, 2), h))
        self.choice_b = nn.Parameter(torch.zeros(s, 2))
        self.block_w = nn.Parameter(_uniform((s, h, 3), h))
        self.block_b = nn.Parameter(torch.zeros(s, 3))
        self.register_buffer("choice_values", torch.tensor(_CHOICE_VALUES), persistent=False)
        self.register_buffer("block_values", torch.tensor(_BLOCK_VALUES), persistent=False)

    # ------------------------------------------------------------------ parameters by role
    SESSION_PARAMS = (
        "spk_w1", "spk_b1", "spk_w2", "spk_b2", "dyn_w1", "dyn_b1", "sta_w1", "sta_b1", "beh_w2", "beh_b2",
        "session_emb", "spk_out_w", "spk_out_b", "dyn_out_w", "dyn_out_b", "sta_pool", "choice_w", "choice_b",
        "block_w", "block_b",
    )  # fmt: skip

    def shared_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights shared across sessions (transformer, embeddings, mask token)."""
        return {k: v for k, v in self.state_dict().items() if k.split(".")[0] not in self.SESSION_PARAMS + ("n_units",)}

    def n_shared_parameters(self) -> int:
        return sum(p.numel() for n, p in self.named_parameters() if n.split(".")[0] not in self.SESSION_PARAMS)

    # ------------------------------------------------------------------ forward
    def tokenize(self, batch: Batch, masks: Masks) -> torch.Tensor:
        """Input tokens (B, 5T, H): stitched values, mask token where masked, plus embeddings."""
        s = batch.session
        b, t, n = batch.spikes.shape
        x = batch.spikes * batch.unit_mask[:, None, :].to(batch.spikes.dtype)  # padded units are zero
        hid = torch.baddbmm(self.spk_b1[s][:, None, :], x, self.spk_w1[s])  # (B, T, 2N)
        hid = F.softsign(hid) * self.hidden_valid[s][:, None, :].to(hid.dtype)  # padded hidden units off
        spk = torch.baddbmm(self.spk_b2[s][:, None, :], hid, self.spk_w2[s])  # (B, T, H)

        dyn_x = torch.stack((batch.wheel, batch.whisker), dim=1)  # (B, 2, T)
        dyn = F.softsign(dyn_x[..., None] * self.dyn_w1[:, s].transpose(0, 1)[:, :, None, :] + self.dyn_b1[:, s].transpose(0, 1)[:, :, None, :])
        sta_x = torch.stack((self.choice_values[batch.choice], self.block_values[batch.block]), dim=1)  # (B, 2)
        sta = F.softsign(sta_x[..., None, None] * self.sta_w1[:, s].transpose(0, 1) + self.sta_b1[:, s].transpose(0, 1))
        beh_hid = torch.cat((dyn, sta), dim=1)  # (B, 4, T, 2)
        w2 = self.beh_w2[:, s].transpose(0, 1)  # (B, 4, 2, H)
        beh = torch.matmul(beh_hid, w2) + self.beh_b2[:, s].transpose(0, 1)[:, :, None, :]  # (B, 4, T, H)

        tokens = torch.cat((spk[:, None], beh), dim=1)  # (B, 5, T, H)
        masked = torch.cat((masks.spikes[:, None], masks.behaviour), dim=1)  # (B, 5, T)
        tokens = torch.where(masked[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens = tokens + self.modality_emb[None, :, None, :] + self.time_emb[None, None, :, :]
        tokens = tokens + self.session_emb[s][:, None, None, :]
        tokens = tokens.reshape(b, 5 * t, -1)
        if self.training and self.cfg.token_dropout > 0:  # drop whole tokens
            keep = torch.rand(b, 5 * t, 1, device=tokens.device) >= self.cfg.token_dropout
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
        x = self.ln_f(x).view(b, 5, t, -1)
        spikes = torch.baddbmm(self.spk_out_b[s][:, None, :], x[:, 0], self.spk_out_w[s])  # (B, T, N)
        dyn = torch.einsum("bmth,bmh->bmt", x[:, 1:3], self.dyn_out_w[:, s].transpose(0, 1))
        dyn = dyn + self.dyn_out_b[:, s].transpose(0, 1)[..., None]  # (B, 2, T)
        pooled = torch.einsum("bmth,bmt->bmh", x[:, 3:5], self.sta_pool[:, s].transpose(0, 1))  # (B, 2, H)
        choice = torch.einsum("bh,bhc->bc", pooled[:, 0], self.choice_w[s]) + self.choice_b[s]
        block = torch.einsum("bh,bhc->bc", pooled[:, 1], self.block_w[s]) + self.block_b[s]
        return Output(spikes=spikes, wheel=dyn[:, 0], whisker=dyn[:, 1], choice=choice, block=block)

    # ------------------------------------------------------------------ loss
    def loss(
        self, out: Output, batch: Batch, masks: Masks, weights: dict[str, float] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum over modalities of each modality's mean loss per masked token.

        Spikes: a spike token is one (trial, bin) of the whole population, so its loss is the
        Poisson NLL (log-rate input) summed over the session's real units; the modality's loss is
        the mean of that over masked tokens. Wheel, whisker: MSE over masked bins. Choice, block:
        cross-entropy over trials whose token is masked. The encoding model scores only spikes,
        the decoding model only behaviour. Unmasked tokens and padded units contribute nothing.

        ``weights`` (modality -> float, default 1 each) scales each modality's term of the total;
        the returned parts are unweighted.
        """
        parts: dict[str, torch.Tensor] = {}
        if self.mode in ("multimodal", "encoding"):
            rate = out.spikes.float()
            nll = (torch.exp(rate) - batch.spikes * rate) * batch.unit_mask[:, None, :]  # (B, T, N)
            sel = masks.spikes.to(rate.dtype)  # (B, T)
            parts["spikes"] = (nll.sum(-1) * sel).sum() / sel.sum().clamp(min=1)
        if self.mode in ("multimodal", "decoding"):
            for i, name in enumerate(("wheel", "whisker")):
                sel = masks.behaviour[:, i].float()
                err = (getattr(out, name).float() - getattr(batch, name)) ** 2
                parts[name] = (err * sel).sum() / sel.sum().clamp(min=1)
            for i, name in ((2, "choice"), (3, "block")):
                sel = masks.behaviour[:, i, 0].float()  # (B,), whole-token flag
                ce = F.cross_entropy(getattr(out, name).float(), getattr(batch, name), reduction="none")
                parts[name] = (ce * sel).sum() / sel.sum().clamp(min=1)
        weights = weights or {}
        unknown = set(weights) - set(LOSS_PARTS)
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; use {LOSS_PARTS}")
        total = torch.stack([v * weights.get(k, 1.0) for k, v in parts.items()]).sum()
        return total, parts


def model_summary(model: NEDS) -> dict:
    """Sizes of a model, for logs and checkpoints."""
    return {
        "config": asdict(model.cfg),
        "mode": model.mode,
        "n_sessions": int(model.n_units.numel()),
        "n_shared_parameters": model.n_shared_parameters(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
