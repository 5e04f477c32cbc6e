"""NDT2, a peer of NEDS: a spatiotemporal masked autoencoder over patches of spike counts.

Implemented from its paper, Ye, Collinger, Wehbe & Gaunt, "Neural Data Transformer 2:
multi-context pretraining for neural spiking activity" (NeurIPS 2023), as a
:class:`~neds.model.base.TrialModel`, so that NEDS's training loop, checkpoints and evaluation serve
it unchanged.

What the paper does (its method section), and this module with it:

* **Spatiotemporal patches.** A trial's spike counts (T bins of 20 ms, N channels) are cut into
  tokens of ``patch_size`` channels at one time bin (32 channels per patch in the paper's main
  experiments). Each channel's count (clipped at ``max_count``) is embedded by a lookup table of
  width ``hidden / patch_size``, and the embeddings of a patch's channels are concatenated into
  the token (no projection: ``hidden`` must be a multiple of ``patch_size``). A learned time
  embedding (the bin) and a learned space embedding (the patch index) are added.
* **Context tokens.** A learned token per session and one per subject are prepended to the
  sequence (the paper also has a task token; there is one task here, so none).
* **Pretraining: masked autoencoding** (MAE, He et al. 2022). A fraction ``ratio`` of each
  trial's patch tokens is masked, exactly ``round(ratio * n)`` of its ``n`` tokens; the encoder
  sees only the unmasked tokens and the context tokens; a light decoder (``decoder_layers``) gets
  the encoder's outputs, a learned mask token with the time and space embeddings of each masked
  patch, and predicts each masked patch's log-rates, one per channel of the patch (a linear
  readout shared by all patches). Loss: Poisson NLL (log-rate input), averaged over the masked
  patches' real units.
* **Fine-tuning: decoding.** The encoder sees every token, and a separate, small transformer
  (``decoder_layers``) reads behaviour out of the encoder's outputs through query tokens, one per
  time step with its time embedding, processed in context with (concatenated to) the encoder's
  outputs. For a new session the shared weights (count readin, time and space embeddings,
  encoder) are copied from the pretrained model and new context tokens are learned (the paper's
  recipe for unseen sessions); the MAE decoder is dropped and the behaviour readout is new.
* **Initialisation.** The lookup table, the time, space and context embeddings start as
  N(0, 1), as torch's ``nn.Embedding`` does (the mask token: N(0, 0.02²), as in MAE).

Where this implementation differs:

* **Units, not channels.** NDT2's data have fixed electrode channels. Here the channels are the
  session's sorted units in the store's order (probes one after the other, each probe's units
  in cluster order), so a patch groups consecutive units of one probe (or the last ones of a probe and
  the first ones of the next). Sessions have different unit counts: a session's last patch is
  padded with zero counts, and the padded units (``batch.unit_mask`` False) are zeroed at the
  input, predicted but never part of the loss. A batch mixing sessions with different numbers of
  tokens pads the token sequences and masks the padding out of the attention.
* **Subject.** The subject token is the store's subject (the animal); a subject may own several
  sessions. A session of unknown subject, or every session when no subjects are given, has a
  subject token of its own.
* **Decoding readout.** The paper decodes continuous kinematics, causally for online control.
  Here trials are decoded offline, so the readout attends both ways. Its queries: one per bin
  for the two dynamic behaviours (wheel speed and whisker motion energy, a linear readout of the
  query's output), and one for each static behaviour (choice and block prior, a linear readout to
  the class logits). A bin's query starts as a learned query vector plus the bin's time embedding
  plus the mean encoder output of the bin's patch tokens (a static query: the mean over the
  trial's tokens), so that a small model trained on a few hundred trials has each query placed in
  time from the first step; learned absolute time embeddings alone make the queries find their
  bins slowly. The losses are NEDS's decoding losses (MSE per bin, cross-entropy per trial).
* **Blocks.** Pre-LayerNorm transformer blocks with a final LayerNorm. In both decoders only the
  decoder's own tokens (the mask tokens, the behaviour queries) are updated: they attend to the
  encoder's outputs and to each other. With one decoder layer (the default) that gives them the
  outputs of a layer over all tokens at a fraction of its cost; with more, each layer reads the
  encoder's outputs, as a cross-attending decoder does.
* **Scoring the pretrained model.** :meth:`NDT2.predict` in self-supervised mode predicts every
  token while it is masked: each trial's tokens are split into ``folds`` fixed folds, one masked
  at a time, so the validation's bits per spike score rates predicted without seeing their own
  counts.

The paper's sizes, as its published configuration has them: hidden 256, 6 encoder layers, 4
heads, MLP width 256 (feed-forward factor 1), 2 decoder layers, dropout 0.2, patches of 32
channels, a count lookup of 21 values, mask ratio 0.5 (0.25 in some runs), AdamW with learning
rate 5e-4 and weight decay 0.01, 20 ms bins.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from neds.config import schema_defaults
from neds.model.balance import LossTerm, decoding_terms, poisson_floor
from neds.model.base import Batch, SessionVocabulary, TrialModel, check_pretrained
from neds.model.neds import dropout
from neds.vocab import (
    DECODING_MODE,
    DYNAMIC_BEHAVIOURS,
    N_CLASSES,
    NDT2_ARCHITECTURE,
    SELF_SUPERVISED_MODE,
    STATIC_BEHAVIOURS,
)

__all__ = [
    "NDT2Config",
    "NDT2",
    "NDT2Context",
    "NDT2Output",
    "TokenMasks",
    "CountReadin",
    "SpikeDecoder",
    "BehaviourDecoder",
    "Block",
]

_DEFAULTS = schema_defaults("ndt2")  # the schema is the one source of defaults
N_CONTEXT = 2
"""Context tokens prepended to every trial's tokens: its session's and its subject's."""


@dataclass
class NDT2Config:
    """Sizes of NDT2 (config section ``ndt2``; each field's default is the schema's,
    ``neds/schema/config.schema.yaml``, and for a field the schema does not list, the one here).

    hidden : token width, a multiple of ``patch_size`` (each unit's count embedding is
        ``hidden / patch_size`` wide)
    n_heads : attention heads (of every transformer)
    mlp : width of the transformer MLPs
    n_layers : encoder layers
    decoder_layers : layers of the masked-patch decoder (self-supervised) and of the behaviour
        readout (decoding)
    patch_size : units per patch token (one time bin each)
    max_count : counts above this are clipped at the input (the lookup has ``max_count + 1``
        entries); the loss sees the true counts
    dropout : dropout on the input tokens and on the residual branches
    max_patches : patches the space embedding has room for: a session may have up to
        ``max_patches * patch_size`` units (the pretrained and the fine-tuned model must agree)
    folds : the folds of :meth:`NDT2.predict`'s masked prediction of every token in
        self-supervised mode (each masks ``1 / folds`` of the tokens: about the training mask ratio)
    n_bins : time bins per trial: set from the binned data (not a config key)
    """

    hidden: int = _DEFAULTS["hidden"]
    n_heads: int = _DEFAULTS["n_heads"]
    mlp: int = _DEFAULTS["mlp"]
    n_layers: int = _DEFAULTS["n_layers"]
    decoder_layers: int = _DEFAULTS["decoder_layers"]
    patch_size: int = _DEFAULTS["patch_size"]
    max_count: int = _DEFAULTS["max_count"]
    dropout: float = _DEFAULTS["dropout"]
    max_patches: int = _DEFAULTS["max_patches"]
    folds: int = _DEFAULTS["folds"]
    n_bins: int = 100  # time bins per trial: set from the binned data (not a config key)

    def __post_init__(self) -> None:
        if self.hidden % self.n_heads:
            raise ValueError(f"ndt2.hidden {self.hidden} must be divisible by ndt2.n_heads {self.n_heads}")
        if self.patch_size < 1 or self.hidden % self.patch_size:
            raise ValueError(
                f"ndt2.hidden {self.hidden} must be a multiple of ndt2.patch_size {self.patch_size} (a token is the "
                "concatenated count embeddings of its units)"
            )
        if self.max_count < 1 or self.max_patches < 1 or self.n_bins < 1:
            raise ValueError("ndt2.max_count, ndt2.max_patches and n_bins must be at least 1")
        if self.folds < 2:
            raise ValueError(f"ndt2.folds {self.folds} must be at least 2 (one fold is masked at a time)")


@dataclass
class TokenMasks:
    """The masks of a self-supervised batch, drawn before the batch's sessions are known.

    noise : (B, T, P) uniform [0, 1) per patch token (P: the vocabulary's largest patch count); a
        trial's ``round(ratio * n)`` real tokens with the lowest noise are masked
    ratio : the fraction of each trial's tokens masked
    """

    noise: torch.Tensor
    ratio: float

    def to(self, device) -> TokenMasks:
        return TokenMasks(self.noise.to(device), self.ratio)


@dataclass
class NDT2Output:
    """Model outputs. Self-supervised: spikes (B, T, N) log-rates (meaningful where ``masked``),
    masked (B, T, N) bool, the real units of the masked patches. Decoding: wheel, whisker (B, T);
    choice (B, 2) and block (B, 3) logits."""

    spikes: torch.Tensor | None = None
    masked: torch.Tensor | None = None
    wheel: torch.Tensor | None = None
    whisker: torch.Tensor | None = None
    choice: torch.Tensor | None = None
    block: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------- layers
def _key_mask(valid: torch.Tensor) -> torch.Tensor | None:
    """The attention's key mask: None where every token is valid (no padding in the batch: the
    attention's faster path)."""
    return None if bool(valid.all()) else valid


class Block(nn.Module):
    """Pre-LayerNorm transformer block, bidirectional attention over the valid tokens
    (scaled_dot_product_attention with a key mask).

    With a ``memory``, the block is a decoder block: its tokens attend to the memory and to each
    other, and the memory is not updated (for the memory's tokens, the same keys and values as if
    memory and tokens were one sequence, so one such block gives the tokens the outputs of a block
    over both; it saves the work on the memory's own outputs).

    Parameters
    ----------
    cfg : NDT2Config (hidden, n_heads, mlp, dropout)
    """

    def __init__(self, cfg: NDT2Config):
        super().__init__()
        self.n_heads, self.p = cfg.n_heads, cfg.dropout
        h = cfg.hidden
        self.ln1 = nn.LayerNorm(h)
        self.qkv = nn.Linear(h, 3 * h)
        self.proj = nn.Linear(h, h)
        self.ln2 = nn.LayerNorm(h)
        self.fc1 = nn.Linear(h, cfg.mlp)
        self.fc2 = nn.Linear(cfg.mlp, h)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None, memory: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, H); memory (B, M, H) or None; valid (B, M + L) bool, the memory's and the
        tokens' that are attended to (padding False), or None: all."""
        b, length, h = x.shape
        heads, d = self.n_heads, h // self.n_heads
        hx = self.ln1(x)
        if memory is None:
            q, k, v = self.qkv(hx).view(b, length, 3, heads, d).permute(2, 0, 3, 1, 4)
        else:
            src = torch.cat((self.ln1(memory), hx), dim=1)
            w, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(hx, w[:h], bias[:h]).view(b, length, heads, d).transpose(1, 2)
            k, v = F.linear(src, w[h:], bias[h:]).view(b, src.shape[1], 2, heads, d).permute(2, 0, 3, 1, 4)
        mask = valid[:, None, None, :] if valid is not None else None
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + dropout(self.proj(att.transpose(1, 2).reshape(b, length, h)), self.p, self.training)
        return x + dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))), self.p, self.training)


class CountReadin(nn.Module):
    """Patch tokens from counts: a learned vector of width ``hidden / patch_size`` per count value
    (0 .. max_count), the vectors of a patch's units concatenated.

    Parameters
    ----------
    max_count : the largest count embedded (larger ones are clipped)
    patch_size : units per patch
    hidden : token width
    """

    no_weight_decay = ("weight",)  # an embedding: see neds.train.param_groups

    def __init__(self, max_count: int, patch_size: int, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_count + 1, hidden // patch_size))

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        """counts (..., K) long in [0, max_count] -> tokens (..., H)."""
        return self.weight[counts].flatten(-2)


class SpikeDecoder(nn.Module):
    """The MAE decoder of pretraining: a mask token per masked patch, plus the patch's time and
    space embeddings, through ``decoder_layers`` decoder blocks over the encoder's outputs (with
    the time and space embeddings of their patches added again, as MAE's decoder does), then a
    linear readout of each masked patch's output to its units' log-rates."""

    no_weight_decay = ("mask_token",)

    def __init__(self, cfg: NDT2Config):
        super().__init__()
        self.mask_token = nn.Parameter(torch.randn(cfg.hidden) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(cfg.hidden)
        self.readout = nn.Linear(cfg.hidden, cfg.patch_size)

    def forward(
        self,
        enc: torch.Tensor,
        valid: torch.Tensor,
        order: torch.Tensor,
        n_keep: torch.Tensor,
        n_real: torch.Tensor,
        position: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-rates of the masked tokens.

        enc (B, C + Le, H): the encoder's outputs, context tokens first, then the kept tokens in
        ``order``; valid (B, C + Le) bool; order (B, L): token indices, kept tokens first, then
        masked ones, then padding; n_keep, n_real (B,): kept and real tokens of each trial;
        position (L, H): the time and space embedding of every token.

        Returns (log-rates (B, Lm, K), their token indices (B, Lm), which are masked tokens (B, Lm)
        bool: the others are padding).
        """
        le = enc.shape[1] - N_CONTEXT
        n_mask = n_real - n_keep
        lm = int(n_mask.max())
        j = torch.arange(lm, device=enc.device)
        is_masked = j[None, :] < n_mask[:, None]
        idx = order.gather(1, (n_keep[:, None] + j[None, :]).clamp(max=order.shape[1] - 1))  # (B, Lm)
        memory = torch.cat((enc[:, :N_CONTEXT], enc[:, N_CONTEXT:] + position[order[:, :le]].to(enc.dtype)), dim=1)
        x = (self.mask_token + position[idx]).to(enc.dtype)
        valid = torch.cat((valid, is_masked), dim=1)
        mask = _key_mask(valid)
        for block in self.blocks:
            x = block(x, mask, memory)
        return self.readout(self.norm(x)), idx, is_masked


class BehaviourDecoder(nn.Module):
    """The decoding readout: a query token per bin (a learned query, plus the bin's time embedding
    and the mean encoder output of its patch tokens) and one per static behaviour (a learned query
    plus the trial's mean encoder output), through ``decoder_layers`` decoder blocks over the
    encoder's outputs; linear readouts of the per-bin queries to wheel and whisker, and of
    the static queries to the choice and block logits."""

    no_weight_decay = ("queries",)

    def __init__(self, cfg: NDT2Config):
        super().__init__()
        h = cfg.hidden
        self.queries = nn.Parameter(torch.randn(1 + len(STATIC_BEHAVIOURS), h))  # per-bin, choice, block
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(h)
        self.dynamic = nn.Linear(h, len(DYNAMIC_BEHAVIOURS))
        self.choice = nn.Linear(h, N_CLASSES["choice"])
        self.block = nn.Linear(h, N_CLASSES["block"])

    def forward(
        self, enc: torch.Tensor, valid: torch.Tensor, pooled: torch.Tensor, time_emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """enc (B, L, H) encoder outputs, valid (B, L) bool, pooled (B, T, H) the mean encoder
        output of each bin's tokens, time_emb (T, H) -> (wheel and whisker (B, T, 2), choice
        logits (B, 2), block logits (B, 3))."""
        b, t = enc.shape[0], time_emb.shape[0]
        dynamic = self.queries[0] + time_emb + pooled  # (B, T, H)
        static = self.queries[1:] + pooled.mean(1, keepdim=True)  # (B, 2, H)
        x = torch.cat((dynamic, static), dim=1).to(enc.dtype)
        valid = torch.cat((valid, torch.ones(b, x.shape[1], dtype=torch.bool, device=valid.device)), dim=1)
        mask = _key_mask(valid)
        for block in self.blocks:
            x = block(x, mask, enc)
        y = self.norm(x)
        return self.dynamic(y[:, :t]), self.choice(y[:, t]), self.block(y[:, t + 1])


# ---------------------------------------------------------------------------------------- sessions
def _subject_index(subjects: list[str] | None, n_sessions: int) -> torch.Tensor:
    """(S,) long, each session's subject as the index of its first appearance in ``subjects``
    (None: every session its own subject; an unknown subject, '', is a subject of its own)."""
    if subjects is None:
        return torch.arange(n_sessions)
    if len(subjects) != n_sessions:
        raise ValueError(f"{len(subjects)} subjects for {n_sessions} sessions; give one subject per session")
    keys = [(s, -1) if s else ("", i) for i, s in enumerate(subjects)]  # unknown subjects are not one animal
    first: dict[tuple[str, int], int] = {}
    return torch.tensor([first.setdefault(key, len(first)) for key in keys], dtype=torch.long)


class NDT2Context(SessionVocabulary):
    """Everything session-specific: the session vocabulary, each session's subject and the
    context tokens (one learned vector per session, one per subject).

    Parameters
    ----------
    n_units : (S,) long tensor, units of each session (index = session index)
    eids : the session ids in the same order, or None (training names them after its data)
    subjects : each session's subject ('' where unknown: that session's own), or None: every
        session its own subject, named by its id
    hidden : H
    """

    no_weight_decay = ("session_emb", "subject_emb")  # embeddings: see neds.train.param_groups

    def __init__(self, n_units: torch.Tensor, eids: list[str] | None, subjects: list[str] | None, hidden: int):
        super().__init__(n_units, eids)
        subjects = [str(s) for s in subjects] if subjects is not None else None
        index = _subject_index(subjects, len(n_units))
        self._subjects = subjects
        self.session_emb = nn.Parameter(torch.randn(len(n_units), hidden))
        self.subject_emb = nn.Parameter(torch.randn(int(index.max()) + 1, hidden))
        self.register_buffer("subject_index", index, persistent=False)

    @property
    def subjects(self) -> list[str] | None:
        """Each session's subject, in session-index order (without subjects, the session ids; None
        while the vocabulary is not named)."""
        return list(self._subjects) if self._subjects is not None else self.eids

    def context(self, session: torch.Tensor) -> torch.Tensor:
        """session (B,) -> context tokens (B, 2, H): the session's, then its subject's."""
        return torch.stack((self.session_emb[session], self.subject_emb[self.subject_index[session]]), dim=1)

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor(
            list(json.dumps({"eids": self.eids, "subjects": self.subjects}).encode()), dtype=torch.uint8
        )

    def set_extra_state(self, state: torch.Tensor) -> None:
        saved = json.loads(bytes(state.cpu().tolist()).decode())
        subjects = saved.get("subjects")
        if subjects is not None:
            index = _subject_index([str(s) for s in subjects], len(self.n_units))
            if not torch.equal(index, self.subject_index.cpu()):
                raise ValueError(
                    f"the weights were saved with the subjects {subjects}, which group the sessions unlike the "
                    f"model's subjects {self.subjects}; build the model with the checkpoint's subjects"
                )
            self._subjects = [str(s) for s in subjects]
        self.eids = saved["eids"]


# ---------------------------------------------------------------------------------------- model
class NDT2(TrialModel):
    """NDT2: patch tokens of spike counts, context tokens, a transformer encoder, and a
    masked-patch decoder (self-supervised) or a behaviour readout (decoding).

    Parameters
    ----------
    cfg : NDT2Config
    n_units : list of int, units of each session in the vocabulary (index = session index)
    mode : 'self_supervised' (masked autoencoding of the patch tokens: pretraining) or
        'decoding' (behaviour from every patch token: fine-tuning, or from scratch)
    eids : the session ids of the vocabulary, in the same order (None: named when trained)
    subjects : the subject of each session (None: every session its own subject)

    Attributes
    ----------
    sessions : NDT2Context, the vocabulary, the subjects and the context tokens. The rest is
        shared: the backbone (count readin, time and space embeddings, encoder, final norm), which
        fine-tuning copies, and the mode's head (``spike_decoder`` in self-supervised mode,
        ``behaviour_decoder`` in decoding mode), copied only from a model of the same mode.
    """

    architecture = NDT2_ARCHITECTURE
    Config = NDT2Config
    modes = (SELF_SUPERVISED_MODE, DECODING_MODE)
    no_weight_decay = ("time_emb", "space_emb")  # embeddings: see neds.train.param_groups
    uses_subjects = True
    HEADS = {SELF_SUPERVISED_MODE: "spike_decoder.", DECODING_MODE: "behaviour_decoder."}
    """The prefix of each mode's head in the state dict."""

    def __init__(
        self,
        cfg: NDT2Config,
        n_units: list[int],
        mode: str = SELF_SUPERVISED_MODE,
        eids: list[str] | None = None,
        subjects: list[str] | None = None,
    ):
        super().__init__()
        self.check_mode(mode)
        if not n_units or min(n_units) < 1:
            raise ValueError(f"every session needs at least one unit, got {n_units}")
        if max(n_units) > cfg.max_patches * cfg.patch_size:
            raise ValueError(
                f"a session has {max(n_units)} units, more than ndt2.max_patches {cfg.max_patches} patches of "
                f"{cfg.patch_size} hold; raise ndt2.max_patches (and pretrain with it)"
            )
        self.cfg, self.mode = cfg, mode
        h = cfg.hidden
        self.readin = CountReadin(cfg.max_count, cfg.patch_size, h)
        self.time_emb = nn.Parameter(torch.randn(cfg.n_bins, h))
        self.space_emb = nn.Parameter(torch.randn(cfg.max_patches, h))
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(h)
        if mode == SELF_SUPERVISED_MODE:
            self.spike_decoder = SpikeDecoder(cfg)
        else:
            self.behaviour_decoder = BehaviourDecoder(cfg)
        self.sessions = NDT2Context(torch.tensor(n_units, dtype=torch.long), eids, subjects, h)
        # the fold of every (bin, patch) in predict's masked prediction: a fixed balanced random split
        perm = torch.randperm(cfg.n_bins * cfg.max_patches, generator=torch.Generator().manual_seed(0))
        fold = torch.empty_like(perm)
        fold[perm] = torch.arange(len(perm)) % cfg.folds
        self.register_buffer("fold", fold.view(cfg.n_bins, cfg.max_patches), persistent=False)

    @property
    def n_patches(self) -> int:
        """Patch tokens per bin of the vocabulary's largest session."""
        return math.ceil(int(self.n_units.max()) / self.cfg.patch_size)

    # ------------------------------------------------------------------ shared and session-specific
    def init_from_pretrained(self, pretrained: dict[str, torch.Tensor], source: str = "") -> list[str]:
        """Start from a pretrained NDT2's state dict: copy the backbone (count readin, time and space
        embeddings, encoder, final norm) and, if the pretrained model was trained in this model's
        mode, its head; the context tokens and the session vocabulary stay as initialised (new
        sessions learn new ones), and the pretrained model's other head is not used (a
        self-supervised model's MAE decoder, for a decoding model).

        Returns the names of the copied tensors. ValueError (naming ``source``) if a backbone
        tensor is missing or of another shape, or the head is there in part or of other shapes.
        """
        own = self.shared_state_dict()
        heads = tuple(self.HEADS.values())
        backbone = [k for k in own if not k.startswith(heads)]
        head = [k for k in own if k.startswith(self.HEADS[self.mode])]
        check_pretrained(
            own,
            pretrained,
            backbone,
            f"pretrained checkpoint {source} does not match the NDT2 model",
            "fine-tune with the pretraining ndt2 config (hidden, n_layers, mlp, patch_size, max_count, max_patches) "
            "and binning (n_bins)",
        )
        copy = list(backbone)
        present = [k for k in head if k in pretrained]
        if present:
            bad = [k for k in present if pretrained[k].shape != own[k].shape]
            if len(present) != len(head) or bad:
                raise ValueError(
                    f"pretrained checkpoint {source} has a {self.mode} head unlike the model's (missing "
                    f"{[k for k in head if k not in pretrained][:3]}, shape mismatch {bad[:3]}); fine-tune with the "
                    "pretraining ndt2 config (decoder_layers)"
                )
            copy += head
        self.load_state_dict({k: pretrained[k] for k in copy}, strict=False)
        return copy

    # ------------------------------------------------------------------ forward
    def tokenize(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Patch tokens of a batch: (tokens (B, T*P, H) in (bin, patch) order, real (B, T*P) bool:
        the patches holding a real unit, P)."""
        b, t, n = batch.spikes.shape
        k = self.cfg.patch_size
        if t != self.cfg.n_bins:
            raise ValueError(f"batch has {t} time bins, the model {self.cfg.n_bins}")
        p = math.ceil(n / k)
        if p > self.cfg.max_patches:
            raise ValueError(f"batch has {n} units, more than ndt2.max_patches {self.cfg.max_patches} patches hold")
        unit_mask = F.pad(batch.unit_mask, (0, p * k - n))  # (B, P*K), the last patch padded
        counts = F.pad(batch.spikes, (0, p * k - n)) * unit_mask[:, None, :].to(batch.spikes.dtype)  # padded units: 0
        counts = counts.round().clamp(0, self.cfg.max_count).long().view(b, t, p, k)
        tokens = self.readin(counts) + self.time_emb[:, None, :] + self.space_emb[None, :p]  # (B, T, P, H)
        real = unit_mask.view(b, 1, p, k).any(-1).expand(b, t, p)
        return tokens.reshape(b, t * p, -1), real.reshape(b, t * p), p

    def _position(self, p: int) -> torch.Tensor:
        """(T*P, H) time and space embedding of every token."""
        return (self.time_emb[:, None, :] + self.space_emb[None, :p]).reshape(-1, self.cfg.hidden)

    def _encode(
        self, tokens: torch.Tensor, real: torch.Tensor, masked: torch.Tensor, session: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder over the context tokens and each trial's real, unmasked tokens.

        Returns (outputs (B, C + Le, H), valid (B, C + Le) bool, order (B, L): token indices, kept
        tokens first then masked ones then padding, each group in token order; n_keep, n_real (B,)).
        """
        b, _, h = tokens.shape
        group = torch.where(real, masked.long(), 2)  # 0 kept, 1 masked, 2 padding
        order = torch.argsort(group, dim=1, stable=True)
        n_keep, n_real = (group == 0).sum(1), real.sum(1)
        le = int(n_keep.max())
        x = tokens.gather(1, order[:, :le, None].expand(-1, -1, h))
        ones = torch.ones(b, N_CONTEXT, dtype=torch.bool, device=tokens.device)
        valid = torch.cat((ones, torch.arange(le, device=tokens.device)[None, :] < n_keep[:, None]), dim=1)
        x = torch.cat((self.sessions.context(session).to(x.dtype), x), dim=1)
        x = dropout(x, self.cfg.dropout, self.training)
        mask = _key_mask(valid)
        for block in self.encoder:
            x = block(x, mask)
        return self.norm(x), valid, order, n_keep, n_real

    def _reconstruct(
        self, tokens: torch.Tensor, real: torch.Tensor, masked: torch.Tensor, session: torch.Tensor, p: int
    ) -> torch.Tensor:
        """(B, T*P, K) log-rates of the masked tokens (zero elsewhere)."""
        enc, valid, order, n_keep, n_real = self._encode(tokens, real, masked, session)
        rates, idx, is_masked = self.spike_decoder(enc, valid, order, n_keep, n_real, self._position(p))
        b, length, k = tokens.shape[0], tokens.shape[1], rates.shape[-1]
        idx = torch.where(is_masked, idx, length)  # padding rows go to a spare slot, dropped
        out = rates.new_zeros(b, length + 1, k).scatter(1, idx[..., None].expand(-1, -1, k), rates)
        return out[:, :length]

    def _masked_tokens(self, masks: TokenMasks, real: torch.Tensor, t: int, p: int) -> torch.Tensor:
        """(B, T*P) bool: each trial's ``round(ratio * n)`` real tokens of lowest noise (at least one,
        and one kept where the trial has two or more)."""
        if masks.noise.shape[1] < t or masks.noise.shape[2] < p:
            raise ValueError(f"the masks cover {tuple(masks.noise.shape[1:])} tokens, the batch ({t}, {p})")
        noise = masks.noise[:, :t, :p].reshape(real.shape).masked_fill(~real, 2.0)  # padding ranks last
        n_real = real.sum(1)
        n_mask = torch.floor(masks.ratio * n_real + 0.5).long().clamp(min=1)
        n_mask = torch.minimum(n_mask, (n_real - 1).clamp(min=1))
        rank = torch.argsort(torch.argsort(noise, dim=1, stable=True), dim=1)
        return (rank < n_mask[:, None]) & real

    def _spike_output(self, logr: torch.Tensor, masked: torch.Tensor, batch: Batch, p: int) -> NDT2Output:
        b, t, n = batch.spikes.shape
        k = self.cfg.patch_size
        spikes = logr.reshape(b, t, p * k)[:, :, :n]
        unit_masked = masked.view(b, t, p).repeat_interleave(k, dim=2)[:, :, :n] & batch.unit_mask[:, None, :]
        return NDT2Output(spikes=spikes, masked=unit_masked)

    def forward(self, batch: Batch, masks: TokenMasks | None = None) -> NDT2Output:
        """Self-supervised: log-rates of the masked patches (``masks`` from :meth:`draw_masks`).
        Decoding: the behaviour predictions from every patch token (``masks`` unused)."""
        tokens, real, p = self.tokenize(batch)
        t = batch.spikes.shape[1]
        if self.mode == SELF_SUPERVISED_MODE:
            if masks is None:
                raise ValueError("a self-supervised NDT2 needs the masks of draw_masks")
            masked = self._masked_tokens(masks, real, t, p)
            return self._spike_output(self._reconstruct(tokens, real, masked, batch.session, p), masked, batch, p)
        enc, valid, order, n_keep, _ = self._encode(tokens, real, torch.zeros_like(real), batch.session)
        # each bin's mean encoder output over its real patches: the start of the bin's query
        b, le, h = enc.shape[0], enc.shape[1] - N_CONTEXT, enc.shape[2]
        kept = enc[:, N_CONTEXT:] * valid[:, N_CONTEXT:, None].to(enc.dtype)
        grid = kept.new_zeros(b, t * p, h).scatter(1, order[:, :le, None].expand(-1, -1, h), kept)
        pooled = grid.view(b, t, p, h).sum(2) / (n_keep / t).clamp(min=1)[:, None, None].to(enc.dtype)
        dyn, choice, block = self.behaviour_decoder(enc, valid, pooled, self.time_emb)
        return NDT2Output(wheel=dyn[..., 0], whisker=dyn[..., 1], choice=choice, block=block)

    # ------------------------------------------------------------------ training and prediction
    def draw_masks(
        self, n_trials: int, n_bins: int, ratio: float, generator: torch.Generator, schemes: tuple[str, ...] | None
    ) -> TokenMasks | None:
        """Self-supervised: a uniform noise per patch token (of the vocabulary's largest session),
        from ``generator``; the ``round(ratio * n)`` real tokens of lowest noise of a trial are
        masked. Decoding: None (the encoder sees every token). ``schemes`` (NEDS's masking schemes)
        do not apply to NDT2 and are ignored."""
        if self.mode != SELF_SUPERVISED_MODE:
            return None
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"mask ratio {ratio} must be in (0, 1); fix training.mask_ratio")
        return TokenMasks(torch.rand((n_trials, n_bins, self.n_patches), generator=generator), float(ratio))

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Decoding: wheel, whisker, choice_prob, block_prob. Self-supervised: ``rate`` (B, T, N)
        expected counts, every patch predicted while masked: the tokens are split into ``folds``
        fixed folds (:attr:`fold`, the same for a (bin, patch) whatever the batch), one masked at
        a time."""
        if self.mode == DECODING_MODE:
            out = self(batch)
            return {
                "wheel": out.wheel.float(),
                "whisker": out.whisker.float(),
                "choice_prob": torch.softmax(out.choice.float(), -1),
                "block_prob": torch.softmax(out.block.float(), -1),
            }
        tokens, real, p = self.tokenize(batch)
        b, t, n = batch.spikes.shape
        fold = self.fold[:, :p].reshape(1, -1)
        logr = torch.zeros(b, t * p, self.cfg.patch_size, device=tokens.device)
        for f in range(self.cfg.folds):
            masked = real & (fold == f)
            if masked.any():
                out = self._reconstruct(tokens, real, masked, batch.session, p).float()
                logr = torch.where(masked[..., None], out, logr)
        return {"rate": torch.exp(logr.reshape(b, t, -1)[:, :, :n])}

    def loss_terms(self, out: NDT2Output, batch: Batch, masks: TokenMasks | None) -> dict[str, LossTerm]:
        """Self-supervised: ``spikes``, the Poisson NLL (log-rate input) over the real units of the
        masked patches, a token per (bin, unit) element (NDT2 averages its loss per element).
        Decoding: ``wheel``, ``whisker`` (squared error per bin), ``choice``, ``block``
        (cross-entropy per trial), every token predicted, as NEDS's decoding losses
        (:func:`~neds.model.balance.decoding_terms`)."""
        terms: dict[str, LossTerm] = {}
        if self.mode == SELF_SUPERVISED_MODE:
            rate, y = out.spikes.float(), batch.spikes.float()
            sel = out.masked.flatten(1)
            terms["spikes"] = LossTerm.of(
                (torch.exp(rate) - y * rate).flatten(1), sel, floor_per_token=poisson_floor(y).flatten(1)
            )
        else:
            terms = decoding_terms(out, batch)
        return terms
