"""What the training loop, the evaluation and the workflow need of a model, whatever its architecture.

NEDS (:mod:`neds.model.neds`) and its peers (:mod:`neds.peers`: NDT2, POYO+) are
:class:`TrialModel` subclasses, so one training loop (:func:`neds.train.train`), one checkpoint
format and one evaluation (:func:`neds.evaluate.evaluation.predict_trials`) serve them all:

* a model is built from its config dataclass (``Config``), the units of each session of its
  vocabulary and a mode (:data:`neds.vocab.MODES`: which outputs carry a loss);
* its session-specific state lives under :attr:`TrialModel.sessions`, a
  :class:`SessionVocabulary` that holds the session ids and units with the weights; everything
  outside it is shared across sessions and is what fine-tuning copies
  (:meth:`TrialModel.init_from_pretrained`);
* a training step is ``masks = model.draw_masks(...)``, ``out = model(batch, masks)``,
  ``terms = model.loss_terms(out, batch, masks)``, balanced into one loss by
  :class:`~neds.model.balance.LossBalance` (``training.loss``);
* :meth:`TrialModel.predict` turns a batch into the evaluation's predictions (expected counts,
  behaviour values, class probabilities).

A :class:`Batch` carries binned counts, and, for models that read spikes as events (POYO+), each
trial's spike events padded to the batch's longest trial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from neds.model.balance import LossBalance, LossTerm

__all__ = ["Batch", "SessionVocabulary", "TrialModel", "check_pretrained"]


@dataclass
class Batch:
    """A batch of trials, possibly from several sessions.

    spikes (B, T, N) float counts, zero on padded units; unit_mask (B, N) bool, True on real units;
    wheel, whisker (B, T) float; choice (B,) long in {0, 1}; block (B,) long in {0, 1, 2};
    session (B,) long, index into the model's session vocabulary.

    Spike events (None unless the data were loaded with them,
    :func:`neds.data.dataset.load_sessions` ``events=True``): event_time (B, E) float32 seconds
    from the start of the trial window, event_unit (B, E) long unit index within the session,
    event_mask (B, E) bool, True on real events (E: the batch's largest event count; padding has
    time 0, unit 0, mask False). Events are in time order within a trial.
    """

    spikes: torch.Tensor
    unit_mask: torch.Tensor
    wheel: torch.Tensor
    whisker: torch.Tensor
    choice: torch.Tensor
    block: torch.Tensor
    session: torch.Tensor
    event_time: torch.Tensor | None = None
    event_unit: torch.Tensor | None = None
    event_mask: torch.Tensor | None = None

    def to(self, device, non_blocking: bool = False) -> Batch:
        return Batch(
            **{k: (v.to(device, non_blocking=non_blocking) if v is not None else None) for k, v in vars(self).items()}
        )


def check_pretrained(
    own: dict[str, torch.Tensor], pretrained: dict[str, torch.Tensor], keys: list[str], what: str, fix: str
) -> None:
    """Raise ValueError unless every tensor ``keys`` of a model's state ``own`` is in the
    pretrained state dict with the same shape; the message names ``what`` (the checkpoint and the
    model), the first missing and mismatched tensors, and ``fix``."""
    missing = [k for k in keys if k not in pretrained]
    bad = [k for k in keys if k in pretrained and pretrained[k].shape != own[k].shape]
    if missing or bad:
        raise ValueError(f"{what} (missing {missing[:3]}, shape mismatch {bad[:3]}); {fix}")


class SessionVocabulary(nn.Module):
    """The sessions a model knows: their ids and units, saved with the weights.

    ``n_units`` is a buffer; the session ids are the module's extra state (``_extra_state`` in
    the state dict, UTF-8 JSON as a uint8 tensor, so that every entry of the state dict is a
    tensor). Subclasses add the layers indexed by the session index.

    Parameters
    ----------
    n_units : (S,) long tensor, units of each session (index = session index)
    eids : the session ids in the same order, or None for a vocabulary not yet named (training
        names it after its data)
    """

    def __init__(self, n_units: torch.Tensor, eids: list[str] | None):
        super().__init__()
        self.register_buffer("n_units", n_units)
        self.eids = eids

    @property
    def eids(self) -> list[str] | None:
        """The session ids, in session-index order (None: not named)."""
        return self._eids

    @eids.setter
    def eids(self, eids: list[str] | None) -> None:
        if eids is not None:
            eids = [str(e) for e in eids]
            if len(eids) != len(self.n_units) or len(set(eids)) != len(eids):
                raise ValueError(
                    f"the session ids {eids} are not {len(self.n_units)} distinct ids, one per session of the vocabulary"
                )
        self._eids = eids

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor(list(json.dumps({"eids": self.eids}).encode()), dtype=torch.uint8)

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.eids = json.loads(bytes(state.cpu().tolist()).decode())["eids"]


class TrialModel(nn.Module):
    """Base class of the models trained by :func:`neds.train.train`.

    Subclasses set the class attributes, build :attr:`sessions` (a :class:`SessionVocabulary`,
    possibly with layers) in ``__init__(cfg, n_units, mode, eids)`` and implement
    :meth:`forward`, :meth:`loss` and :meth:`predict`; the others have defaults.

    Class attributes
    ----------------
    architecture : its name in checkpoints and config (``neds``, ``ndt2``, ``poyo_plus``)
    Config : its config dataclass (``model.cfg`` is one; checkpoints store it as a dict)
    modes : the modes (:data:`neds.vocab.MODES`) it can be trained in
    no_weight_decay : names of its own parameters exempt from weight decay
        (:func:`neds.train.param_groups`; submodules may declare their own)
    reads_events : whether it reads the spike events of a :class:`Batch` (the data are then
        loaded with them)
    uses_subjects : whether its constructor takes ``subjects=`` (the subject of each session), and
        its ``sessions`` has a ``subjects`` list saved with the weights
    shared_output : whether its :class:`Output` carries the shared representation, one slice per
        modality (``Output.shared``), at which the gradient balances
        (:data:`neds.vocab.GRADIENT_GROUPS`) scale the modalities' gradients; a model without one
        trains with :data:`neds.vocab.GRADIENT_BALANCE_FALLBACK` when one of those is asked for
    """

    architecture: ClassVar[str]
    Config: ClassVar[type]
    modes: ClassVar[tuple[str, ...]]
    no_weight_decay: ClassVar[tuple[str, ...]] = ()
    reads_events: ClassVar[bool] = False
    uses_subjects: ClassVar[bool] = False
    shared_output: ClassVar[bool] = False

    cfg: Any
    mode: str
    sessions: SessionVocabulary

    def check_mode(self, mode: str) -> None:
        """Raise ValueError unless this architecture trains in ``mode``."""
        if mode not in self.modes:
            raise ValueError(f"{self.architecture} models train in modes {self.modes}, not {mode!r}")

    @property
    def n_units(self) -> torch.Tensor:
        """(S,) long, units of each session of the vocabulary."""
        return self.sessions.n_units

    @property
    def eids(self) -> list[str] | None:
        """The session ids of the vocabulary (None: not named)."""
        return self.sessions.eids

    # ------------------------------------------------------------------ shared and session-specific
    def shared_state_dict(self) -> dict[str, torch.Tensor]:
        """The state shared across sessions: everything outside :attr:`sessions`."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("sessions.")}

    def n_shared_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters()) - sum(p.numel() for p in self.sessions.parameters())

    def init_from_pretrained(self, pretrained: dict[str, torch.Tensor], source: str = "") -> list[str]:
        """Start fine-tuning from a pretrained model's state dict: copy its shared state
        (:meth:`shared_state_dict`); the session-specific state stays as initialised. Returns the
        names of the copied tensors; ValueError (naming ``source``) if the shapes differ."""
        shared = self.shared_state_dict()
        what = f"pretrained checkpoint {source} does not match the model"
        check_pretrained(shared, pretrained, list(shared), what, "fine-tune with the pretraining model config")
        self.load_state_dict({k: pretrained[k] for k in shared}, strict=False)
        return list(shared)

    def transferable_session_state(self) -> dict[str, int]:
        """The session-specific tensors that do not depend on a session's units, name -> the axis
        that indexes the sessions: what a new session's layers can start from, copied from a
        pretrained session (``training.<stage>.session_init: pretrained``). None by default."""
        return {}

    def init_spike_bias(self, log_rates: torch.Tensor) -> None:
        """Start each session's spike output at ``log_rates`` (S, N_max), each unit's log mean
        count per bin (``training.<stage>.spike_bias_init: mean_rate``)."""
        raise NotImplementedError(f"{self.architecture} models have no per-unit spike output bias to initialise")

    def canonical_parameters(self) -> list[nn.Parameter]:
        """Every parameter once, in a fixed order: the order gradient clipping reduces the
        gradients' norms in (the total norm is a float sum, so the order decides its last bit)."""
        return list(self.parameters())

    # ------------------------------------------------------------------ training and prediction
    def draw_masks(
        self, n_trials: int, n_bins: int, ratio: float, generator: torch.Generator, schemes: tuple[str, ...] | None
    ) -> Any:
        """The masks of one training batch (None for a model that masks nothing), drawn on the CPU
        from ``generator`` so that a resumed run draws what an uninterrupted one draws; the loop
        moves them to the device with ``.to(device)``."""
        return None

    def loss_terms(self, out: Any, batch: Batch, masks: Any) -> dict[str, LossTerm]:
        """{modality: its :class:`~neds.model.balance.LossTerm`} of one batch: per-trial sums over
        the masked tokens of each modality the model's mode is trained on."""
        raise NotImplementedError

    def loss(
        self, out: Any, batch: Batch, masks: Any, weights: dict[str, float] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, {modality: its mean loss per masked token}) of one batch, the ``weights``
        balance (:class:`~neds.model.balance.LossBalance`): ``weights`` (modality -> float,
        default 1 each) scales each term of the total. The training loop balances the terms as
        ``training.loss`` says."""
        return LossBalance("weights", weights)(self.loss_terms(out, batch, masks), batch.session)

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The evaluation's predictions for a batch (the layout of :mod:`neds.evaluate.evaluation`),
        those of the model's mode: ``rate`` (B, T, N) expected counts per bin (padded units
        included); ``wheel``, ``whisker`` (B, T); ``choice_prob`` (B, 2), ``block_prob`` (B, 3)."""
        raise NotImplementedError

    def summary(self) -> dict:
        """Sizes of the model, for logs and checkpoints."""
        from dataclasses import asdict

        return {
            "architecture": self.architecture,
            "config": asdict(self.cfg),
            "mode": self.mode,
            "n_sessions": int(self.n_units.numel()),
            "n_shared_parameters": self.n_shared_parameters(),
            "n_parameters": sum(p.numel() for p in self.parameters()),
        }
