"""Multi-task masking and the evaluation masks.

Masks are boolean tensors, True where a token is masked (replaced by the mask token at the input
and predicted at the output):

* ``spikes``: (B, T), one flag per trial and time bin (all units of a bin together);
* ``behaviour``: (B, M, T) for the M = 4 behaviours in :data:`BEHAVIOURS` order. A static
  behaviour (choice, block) is masked as a whole: its T flags are equal.

Each trial draws its own scheme and its own random bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neds.vocab import BEHAVIOURS, DYNAMIC_BEHAVIOURS, MASKING_SCHEMES, STATIC_BEHAVIOURS

__all__ = [
    "BEHAVIOURS",
    "DYNAMIC",
    "STATIC",
    "SCHEMES",
    "Masks",
    "draw_masks",
    "scheme_masks",
    "eval_masks",
]

DYNAMIC = tuple(BEHAVIOURS.index(b) for b in DYNAMIC_BEHAVIOURS)  # indices of the per-bin behaviours in BEHAVIOURS
STATIC = tuple(BEHAVIOURS.index(b) for b in STATIC_BEHAVIOURS)  # indices of the per-trial behaviours
SCHEMES = MASKING_SCHEMES
"""The multi-task masking schemes (:data:`neds.vocab.MASKING_SCHEMES`); ``Masks.scheme`` indexes them."""


@dataclass
class Masks:
    """spikes (B, T) bool; behaviour (B, M, T) bool; scheme (B,) long index into SCHEMES."""

    spikes: torch.Tensor
    behaviour: torch.Tensor
    scheme: torch.Tensor

    def to(self, device) -> Masks:
        return Masks(self.spikes.to(device), self.behaviour.to(device), self.scheme.to(device))


def _random_bins(shape: tuple[int, ...], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli(ratio) per bin along the last dim, with at least one masked bin per row."""
    mask = torch.rand(shape, generator=generator) < ratio
    empty = ~mask.any(dim=-1)  # rows that drew no bin get one at random
    pick = torch.randint(shape[-1], shape[:-1], generator=generator)
    mask |= empty.unsqueeze(-1) & (torch.arange(shape[-1]) == pick.unsqueeze(-1))
    return mask


def scheme_masks(scheme: torch.Tensor, n_bins: int, ratio: float, generator: torch.Generator) -> Masks:
    """Masks for given per-trial schemes.

    Parameters
    ----------
    scheme : (B,) long, index into SCHEMES
    n_bins : int, T
    ratio : float in (0, 1), Bernoulli probability of masking a bin in the random schemes; a
        static behaviour is masked whole with this probability in the within-behavioural and
        cross-modal schemes (it has no bins of its own).
    generator : torch.Generator (CPU), so masks are reproducible and resumable

    Returns
    -------
    Masks on the CPU
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio {ratio} must be in (0, 1); fix training.mask_ratio")
    b, m = scheme.shape[0], len(BEHAVIOURS)
    spikes = torch.zeros(b, n_bins, dtype=torch.bool)
    behaviour = torch.zeros(b, m, n_bins, dtype=torch.bool)
    # draw every random component once for the whole batch, then select per trial by scheme
    spike_bins = _random_bins((b, n_bins), ratio, generator)
    beh_bins = _random_bins((b, m, n_bins), ratio, generator)
    static_whole = torch.rand(b, len(STATIC), generator=generator) < ratio
    dyn, stat = list(DYNAMIC), list(STATIC)

    is_ = {name: (scheme == i) for i, name in enumerate(SCHEMES)}
    spikes |= is_["neural"].unsqueeze(1)
    behaviour |= is_["behavioural"].view(b, 1, 1)
    spikes |= is_["within_neural"].unsqueeze(1) & spike_bins
    within_b = is_["within_behavioural"].view(b, 1, 1)
    behaviour[:, dyn] |= within_b & beh_bins[:, dyn]
    cross = is_["cross_modal"]
    spikes |= cross.unsqueeze(1) & spike_bins
    behaviour[:, dyn] |= cross.view(b, 1, 1) & spike_bins.unsqueeze(1)  # the same bins as the spikes
    static_any = (is_["within_behavioural"] | cross).unsqueeze(1) & static_whole  # (B, 2)
    behaviour[:, stat] |= static_any.unsqueeze(-1)
    return Masks(spikes, behaviour, scheme.clone())


def draw_masks(
    batch_size: int,
    n_bins: int,
    ratio: float,
    generator: torch.Generator,
    schemes: tuple[str, ...] = SCHEMES,
) -> Masks:
    """Training masks: per trial, one of ``schemes`` drawn uniformly, then its bins.

    ``schemes`` restricts the draw (the unimodal models use ('neural',) or ('behavioural',);
    the masking ablation removes 'cross_modal', then also the 'within_*' schemes).
    """
    unknown = set(schemes) - set(SCHEMES)
    if unknown or not schemes:
        raise ValueError(f"unknown masking schemes {sorted(unknown)}; choose from {SCHEMES}")
    allowed = torch.tensor([SCHEMES.index(s) for s in schemes])
    scheme = allowed[torch.randint(len(allowed), (batch_size,), generator=generator)]
    return scheme_masks(scheme, n_bins, ratio, generator)


def eval_masks(kind: str, batch_size: int, n_bins: int, keep: str | None = None) -> Masks:
    """Deterministic evaluation masks.

    kind : 'encoding' (all spikes masked, all behaviour visible), 'decoding' (all spikes
        visible, all behaviour masked) or 'encoding_from' (all spikes masked, all behaviour
        masked except ``keep``, one of BEHAVIOURS: the paper's Table 1).
    """
    b, m = batch_size, len(BEHAVIOURS)
    if kind == "encoding":
        return Masks(
            torch.ones(b, n_bins, dtype=torch.bool),
            torch.zeros(b, m, n_bins, dtype=torch.bool),
            torch.zeros(b, dtype=torch.long),
        )
    if kind == "decoding":
        return Masks(
            torch.zeros(b, n_bins, dtype=torch.bool),
            torch.ones(b, m, n_bins, dtype=torch.bool),
            torch.ones(b, dtype=torch.long),
        )
    if kind == "encoding_from":
        if keep not in BEHAVIOURS:
            raise ValueError(f"keep={keep!r} must be one of {BEHAVIOURS}")
        behaviour = torch.ones(b, m, n_bins, dtype=torch.bool)
        behaviour[:, BEHAVIOURS.index(keep)] = False
        return Masks(torch.ones(b, n_bins, dtype=torch.bool), behaviour, torch.zeros(b, dtype=torch.long))
    raise ValueError(f"unknown evaluation mask {kind!r}; use 'encoding', 'decoding' or 'encoding_from'")
