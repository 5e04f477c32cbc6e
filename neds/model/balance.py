"""How the modalities' losses are put together into the one training loss (``training.loss``).

A model gives its loss as :class:`LossTerm` s, one per modality it is trained on, each holding
per-trial sums over the trial's masked tokens (:meth:`neds.model.base.TrialModel.loss_terms`).
A :class:`LossBalance` reduces them to the total that is minimised, in one of eight ways
(:data:`neds.vocab.LOSS_BALANCES`):

``weights``
    each modality's mean loss per masked token, times its hand-set weight
    (``training.loss_weights``), summed;
``null``
    each modality's loss relative to its *null deviance*: the loss of the model that predicts
    the session's training-trial average (each unit's mean count, the behaviour's mean, the
    class frequencies), above the loss of a perfect prediction. A modality's term is then the
    fraction of its null deviance left (1 at the null model, 0 when perfect: 1 - R² for wheel
    and whisker, one minus the deviance explained for spikes), scale-free, so no weight is set
    by hand; summed;
``null_units``
    as ``null``, but a population's spike term counts each of its units as a signal of its own:
    the spike deviance relative to the null is divided by the masked bins rather than the masked
    (bin, unit) elements, so a session of N units adds N times ``null``'s spike term (the
    behaviours, one signal each, are unchanged);
``uncertainty``
    the ``null`` terms ``r_m`` weighted by learned homoscedastic uncertainties (Kendall, Gal and
    Cipolla, CVPR 2018): ``sum_m exp(-s_m) r_m + s_m``, one ``s_m`` per modality, trained with the
    model (its optimum weighs each modality by the inverse of its current term, so each
    modality's *relative* improvement counts the same);
``gradnorm``
    the ``null`` terms ``r_m``, summed, with each modality's gradient scaled, at every step, where
    it enters the trunk: at the model's shared representation (the trunk's output, of which each
    modality's head reads its own tokens), modality ``m``'s gradient ``g_m`` is scaled to
    ``mean_k |g_k|``, while the heads learn from their own terms unscaled. This is the target of
    GradNorm (Chen et al., ICML 2018) with its asymmetry ``alpha = 0``, met exactly at each step
    rather than approached by learning loss weights, and measured at the shared representation
    rather than at the last shared layer's weights (as the upper bound of Sener and Koltun,
    NeurIPS 2018, does). No modality, whatever its scale or how much of it is left to learn, then
    moves the shared weights more than another. It costs no extra backward pass: the modalities'
    gradients there are disjoint slices of one gradient;
``gradnorm_groups``
    as ``gradnorm``, but with two groups instead of five modalities: the neural (spikes) and the
    behavioural (wheel, whisker, choice, block). At the shared representation the two groups'
    gradients are scaled to the same norm (a group's norm over all of its modalities' slices),
    and within the behavioural group the four keep the proportions the ``null`` terms give them.
    Encoding and decoding then move the shared weights equally, while a behaviour that is fit
    already is not lifted to the share of one that is not;
``gradnorm_lift``
    as ``gradnorm``, but only a modality whose gradient at the shared representation is below
    the mean norm is scaled, up to it; one above it is left as it is. No modality moves the
    shared weights less than the average one, and none is held back to make room for another;
``paper``
    the NEDS authors' normalisation: the spike Poisson NLL averaged per masked (bin, unit)
    element, wheel and whisker squared errors averaged per masked bin, the choice and block
    cross-entropies summed over the batch and divided by the number of masked bins (a trial's
    choice or block token spans all bins of the trial), the modalities summed unweighted.

Whatever the balance, each modality's fraction of null deviance left on the batch is reported
beside the loss (``<modality>_vs_null``), so that a modality that stops learning shows in
``history.jsonl`` and in the training-curves figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from neds.vocab import (
    DYNAMIC_BEHAVIOURS,
    GRADIENT_GROUPS,
    LIFT_ONLY,
    LOSS_BALANCES,
    MODALITIES,
    N_CLASSES,
    NULL_BALANCES,
    STATIC_BEHAVIOURS,
)

__all__ = [
    "LossTerm",
    "LossBalance",
    "null_deviances",
    "poisson_floor",
    "decoding_terms",
    "NULL_FLOOR",
    "VS_NULL",
    "GRAD_FLOOR",
]

NULL_FLOOR = 1e-6
"""A session whose null deviance of a modality is below this (a behaviour constant over its
training trials, such as a session without blocks) has nothing to be scored relative to: that
modality of that session is left out of the null-relative terms (:data:`neds.vocab.NULL_BALANCES`)
and of the ``<modality>_vs_null`` diagnostics (:attr:`LossBalance.left_out`), as the evaluation
leaves a target constant on the training trials unscored."""
VS_NULL = "_vs_null"
"""Suffix of the parts that report a modality's fraction of null deviance left."""
GRAD_FLOOR = 1e-12
"""A group of modalities whose gradient at the shared representation is below this norm on a batch
(nothing of it masked there, or its readout still at zero) is left as it is under the balances that
scale gradients there (:data:`neds.vocab.GRADIENT_GROUPS`) and out of the mean norm the others are
scaled to."""


@dataclass
class LossTerm:
    """One modality's loss on a batch, per trial (B,), over that trial's masked tokens.

    total : the summed loss (spikes: Poisson NLL with log-rate input, summed over the session's
        real units; wheel, whisker: squared error; choice, block: cross-entropy)
    floor : the same sum for a perfect prediction (spikes: the NLL at rate = count; zero for the
        behaviours), so ``total - floor`` is the deviance
    tokens : the number of masked tokens (spikes, wheel, whisker: bins; choice, block: 0 or 1)
    elements : the normaliser of the authors' loss: masked (bin, unit) elements for spikes,
        masked bins for every behaviour (a choice or block token spans all bins of its trial)
    """

    total: torch.Tensor
    floor: torch.Tensor
    tokens: torch.Tensor
    elements: torch.Tensor

    @classmethod
    def of(
        cls,
        per_token: torch.Tensor,
        selected: torch.Tensor,
        elements_per_token: torch.Tensor | float = 1.0,
        floor_per_token: torch.Tensor | None = None,
    ) -> LossTerm:
        """The term of per-token losses ``per_token`` (B,) or (B, T) over the tokens where
        ``selected`` (same shape, bool or 0/1) holds; ``elements_per_token`` (scalar or (B,)) is
        what one masked token adds to ``elements``."""
        sel = selected.to(per_token.dtype)
        if per_token.dim() == 1:
            per_token, sel = per_token[:, None], sel[:, None]
            floor_per_token = None if floor_per_token is None else floor_per_token[:, None]
        tokens = sel.sum(1)
        floor = (floor_per_token * sel).sum(1) if floor_per_token is not None else torch.zeros_like(tokens)
        return cls((per_token * sel).sum(1), floor, tokens, tokens * elements_per_token)


def decoding_terms(out, batch) -> dict[str, LossTerm]:
    """The terms of a decoder that predicts every behaviour token (the peers' fine-tuning): wheel
    and whisker, squared error per bin; choice and block, cross-entropy per trial, in float32.
    ``out`` has the outputs ``wheel``, ``whisker`` (B, T) and the logits ``choice``, ``block``."""
    terms: dict[str, LossTerm] = {}
    for name in DYNAMIC_BEHAVIOURS:
        err = (getattr(out, name).float() - getattr(batch, name).float()) ** 2
        terms[name] = LossTerm.of(err, torch.ones_like(err, dtype=torch.bool))
    n_bins = batch.spikes.shape[1]
    for name in STATIC_BEHAVIOURS:
        ce = F.cross_entropy(getattr(out, name).float(), getattr(batch, name), reduction="none")
        terms[name] = LossTerm.of(ce, torch.ones_like(ce, dtype=torch.bool), float(n_bins))
    return terms


def poisson_floor(counts: torch.Tensor) -> torch.Tensor:
    """The Poisson NLL (log-rate input, without the log-factorial) of a perfect prediction,
    elementwise: ``y - y log y`` (0 where y = 0)."""
    return counts - torch.xlogy(counts, counts)


@torch.no_grad()
def null_deviances(data, idx: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """(S, M) float64: each session's null deviance per token of each modality
    (:data:`neds.vocab.MODALITIES` order; spikes per (bin, unit) element), from the trials ``idx`` of ``data``
    (:class:`neds.data.dataset.TrialData`): the mean over those trials' tokens of the loss of the
    training-trial average above the loss of a perfect prediction. Spikes: the Poisson deviance
    of each unit's mean count per bin, per (bin, unit) element; wheel, whisker: their variance;
    choice, block: the entropy of their class frequencies. NaN for a session without trials in
    ``idx``."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    out = torch.full((len(data.eids), len(MODALITIES)), math.nan, dtype=torch.float64)
    for s in range(len(data.eids)):
        rows = idx[data.session[idx] == s]
        if len(rows) == 0:
            continue
        n = int(data.n_units[s])
        # one pass: each unit's spike count S and the summed floor suffice, since the null rate is
        # S / n_tokens and sum over bins of (rate - y log rate) = S - S log rate
        count, floor = torch.zeros(n, dtype=torch.float64), 0.0
        for start in range(0, len(rows), chunk):
            y = data.spikes[rows[start : start + chunk], :, :n].double()
            count += y.sum((0, 1))
            floor += float(poisson_floor(y).sum())
        n_tokens = len(rows) * data.spikes.shape[1]
        dev = float((count - torch.xlogy(count, count / n_tokens)).sum()) - floor
        out[s, 0] = dev / (n_tokens * n)
        for j, name in enumerate(DYNAMIC_BEHAVIOURS, start=1):
            out[s, j] = getattr(data, name)[rows].double().var(unbiased=False)
        for j, name in enumerate(STATIC_BEHAVIOURS, start=1 + len(DYNAMIC_BEHAVIOURS)):
            p = torch.bincount(getattr(data, name)[rows], minlength=N_CLASSES[name]).double() / len(rows)
            out[s, j] = -torch.xlogy(p, p).sum()
    return out


class LossBalance(nn.Module):
    """The reduction of a model's :class:`LossTerm` s to its training loss (the module docstring).

    kind : one of :data:`neds.vocab.LOSS_BALANCES`
    weights : modality -> weight of the ``weights`` balance (default 1 each; ignored otherwise)
    nulls : (S, M) null deviances per session and modality (:func:`null_deviances` of the
        training trials), indexed by the batch's session; needed by the null-relative balances,
        and for the ``<modality>_vs_null`` parts (left out without them)
    eids : the sessions of ``nulls``' rows, to name those left out (:attr:`left_out`)

    Its parameters are the learned log-variances ``log_var`` (M,) of the ``uncertainty``
    balance (none otherwise); the training loop optimises and checkpoints them with the model.
    The balances of :data:`neds.vocab.GRADIENT_GROUPS` need the model's shared representation at
    every call (``shared``).
    """

    def __init__(
        self,
        kind: str = "weights",
        weights: dict[str, float] | None = None,
        nulls: torch.Tensor | None = None,
        eids: list[str] | None = None,
    ) -> None:
        super().__init__()
        if kind not in LOSS_BALANCES:
            raise ValueError(f"unknown loss balance {kind!r}; use one of {LOSS_BALANCES}")
        unknown = set(weights or {}) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; use {MODALITIES}")
        self.kind = kind
        self.weights = dict(weights or {})
        if kind in NULL_BALANCES and nulls is None:
            raise ValueError(f"the {kind!r} loss balance needs the null deviances of the training sessions")
        self.left_out: dict[str, list[str]] = {}
        """session -> the modalities whose null deviance is below :data:`NULL_FLOOR` there, left out
        of the relative terms and diagnostics (a session without trials in ``nulls`` is not listed)"""
        if nulls is not None:
            for s, m in (((nulls < NULL_FLOOR) & ~torch.isnan(nulls)).nonzero()).tolist():
                self.left_out.setdefault(eids[s] if eids else f"session {s}", []).append(MODALITIES[m])
        self.register_buffer("nulls", None if nulls is None else nulls.float(), persistent=False)
        self.register_buffer("usable", None if nulls is None else nulls >= NULL_FLOOR, persistent=False)
        self.log_var = nn.Parameter(torch.zeros(len(MODALITIES))) if kind == "uncertainty" else None
        # the balances scaling gradients at the trunk: which group each modality belongs to (G, M), and
        # the sum and count of each modality's scale factor over the steps since the last report
        groups = GRADIENT_GROUPS.get(kind, ())
        member = torch.zeros(len(groups), len(MODALITIES))
        for g, group in enumerate(groups):
            member[g, [MODALITIES.index(m) for m in group]] = 1.0
        self.register_buffer("member", member, persistent=False)
        self.register_buffer("weight_sum", torch.zeros(len(MODALITIES), dtype=torch.float64), persistent=False)
        self.register_buffer("weight_steps", torch.zeros(len(MODALITIES), dtype=torch.float64), persistent=False)

    def forward(
        self, terms: dict[str, LossTerm], session: torch.Tensor, shared: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the total loss, its parts): each modality's mean loss per masked token (unweighted,
        whatever the balance) and, with null deviances, ``<modality>_vs_null``, its fraction of
        null deviance left on the batch's trials of sessions where it has one. Modalities without
        a masked token in the batch (for ``uncertainty``: none in such a session) add nothing to
        the total. ``shared`` is the representation the model's heads read (``Output.shared``),
        where the balances of :data:`neds.vocab.GRADIENT_GROUPS` scale the modalities' gradients."""
        parts: dict[str, torch.Tensor] = {}
        vs_null: dict[str, torch.Tensor] = {}
        objective: list[torch.Tensor] = []
        for name, term in terms.items():
            tokens = term.tokens.sum()
            parts[name] = term.total.sum() / tokens.clamp(min=1)
            m = MODALITIES.index(name)
            scored = tokens
            if self.nulls is not None:  # spikes: the null is per (bin, unit) element
                usable = self.usable[session, m]
                null = torch.where(usable, self.nulls[session, m], 1.0).to(term.total.dtype)  # 1: no inf, no NaN grad
                per = (term.elements if name == "spikes" else term.tokens) * usable
                relative = ((term.total - term.floor) / null * usable).sum()
                vs_null[name] = relative / per.sum().clamp(min=1)
                scored = (term.tokens * usable).sum()
            if self.kind == "weights":
                objective.append(parts[name] * self.weights.get(name, 1.0))
            elif self.kind == "paper":
                objective.append(term.total.sum() / term.elements.sum().clamp(min=1))
            elif self.kind == "null" or self.kind in GRADIENT_GROUPS:  # gradnorm: gradients at the trunk scaled below
                objective.append(vs_null[name])
            elif self.kind == "null_units":  # per masked bin: a spike token holds a population's bin
                objective.append(relative / scored.clamp(min=1))
            else:  # uncertainty
                weighted = torch.exp(-self.log_var[m]) * vs_null[name]
                # a modality with nothing masked adds a zero that keeps its outputs in the graph (every
                # rank of a data-parallel run reduces the same gradients), and must not pull its s_m
                # down; the mask multiplies rather than branches, so no step waits on the device
                objective.append(weighted + self.log_var[m] * (scored > 0))
        if self.kind in GRADIENT_GROUPS and objective:
            self._equal_gradients([MODALITIES.index(n) for n in terms], shared)
        total = torch.stack(objective).sum() if objective else torch.zeros(())
        parts.update({f"{k}{VS_NULL}": v for k, v in vs_null.items()})
        return total, parts

    def _equal_gradients(self, modalities: list[int], shared: torch.Tensor | None) -> None:
        """The balances of :data:`neds.vocab.GRADIENT_GROUPS`: hook the shared representation
        (B, M, ...), whose slice ``[:, m]`` modality ``m``'s head reads alone, so that in the backward pass each
        group's part of its gradient (:data:`neds.vocab.GRADIENT_GROUPS`: the slices of the
        group's modalities among ``modalities``) is scaled to the mean norm of the groups that have
        one, a group's slices by the same factor (a group without gradient, such as a
        zero-initialised readout's, stays zero); under :data:`neds.vocab.LIFT_ONLY` balances only
        a group below the mean is scaled. The heads keep their own, unscaled gradients.
        Under data parallelism the squared norms are averaged over the ranks first, so every rank
        scales alike. Nothing is hooked without gradients (evaluation)."""
        if not torch.is_grad_enabled():
            return
        if shared is None or not shared.requires_grad or shared.dim() < 2 or shared.shape[1] != len(MODALITIES):
            raise ValueError(
                f"the {self.kind!r} loss balance scales the modalities' gradients at the model's shared "
                f"representation, one slice per modality of {MODALITIES}, and this model's output has none "
                "(Output.shared); choose another training.loss"
            )
        idx = torch.tensor(modalities, device=shared.device)
        member, lift_only = self.member.index_select(1, idx), self.kind in LIFT_ONLY  # (G, trained modalities)

        def scale(grad: torch.Tensor) -> torch.Tensor:
            dims = tuple(d for d in range(grad.dim()) if d != 1)
            squares = grad.index_select(1, idx).float().pow(2).sum(dims)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(squares)
                squares = squares / torch.distributed.get_world_size()
            norms = (member @ squares).sqrt()  # (G,)
            present = norms > GRAD_FLOOR
            mean = (norms * present).sum() / present.sum().clamp(min=1)  # no indexing: no step waits on the device
            factor = torch.where(present, mean / norms.clamp(min=GRAD_FLOOR), 1.0)
            if lift_only:
                factor = factor.clamp(min=1.0)
            factor = member.T @ factor  # per modality
            had = member.T @ present.float() > 0
            self.weight_sum.index_add_(0, idx, (factor * had).double())
            self.weight_steps.index_add_(0, idx, had.double())
            full = torch.ones(grad.shape[1], device=grad.device).index_copy(0, idx, factor)
            return grad * full.view(1, -1, *([1] * (grad.dim() - 2))).to(grad.dtype)

        shared.register_hook(scale)

    def modality_weights(self) -> dict[str, float]:
        """The weight of each modality's term, for the history: ``uncertainty``, the current
        ``exp(-s_m)``; those of :data:`neds.vocab.GRADIENT_GROUPS`, the mean factor its gradient at the
        shared representation was scaled by, over the steps since the last call where its group
        had one there (NaN where it had none), the count then reset. Empty otherwise."""
        if self.kind in GRADIENT_GROUPS:  # the factor its gradient at the trunk was scaled by
            mean = (self.weight_sum / self.weight_steps).cpu()
            self.weight_sum.zero_()
            self.weight_steps.zero_()
            return {name: float(v) for name, v in zip(MODALITIES, mean)}
        if self.log_var is None:
            return {}
        return {name: float(torch.exp(-v)) for name, v in zip(MODALITIES, self.log_var.detach())}
