"""POYO+ (Azabou et al., ICLR 2025) as a peer of NEDS: the ``torch_brain`` library's model, trained
by :func:`neds.train.train` and scored by :mod:`neds.evaluate.evaluation` like NEDS.

What comes from torch_brain (PyPI ``pytorch-brain`` 0.1.0)
    The whole network is :class:`torch_brain.models.POYOPlus` (:attr:`POYOPlusModel.poyo`): the unit,
    session, token-type, task and latent embeddings, the rotary cross-attention from the spike tokens
    to the latents, the latent self-attention layers, the rotary cross-attention from the output
    queries to the latents and the per-task linear readouts (:class:`torch_brain.nn.MultitaskReadout`).
    Its unit and session vocabularies are :class:`torch_brain.nn.InfiniteVocabEmbedding` layers; the
    four decoding tasks are registered in its modality registry
    (:func:`torch_brain.registry.register_modality`) as :data:`TASKS`. This module builds the
    model's inputs from a :class:`~neds.model.base.Batch`, computes the loss and handles the
    vocabularies; it changes nothing inside the network.

Inputs
    The trial window [0, L), L = ``n_bins * bin_size_s`` seconds (the binned trial window, POYO+'s
    ``sequence_length``), gives the tokens ``POYOPlus.tokenize`` makes of one window: per unit of the
    trial's session a start token (token type 1, time 0) and an end token (type 2, time L), from
    ``create_start_end_unit_tokens``; one token per spike (type 0) at its time, with its unit's
    vocabulary index; ``input_mask`` False on padded events and on the padded units of a session
    with fewer units than the largest. The latents are ``create_linspace_latent_tokens(0, L,
    latent_step, num_latents_per_step)``. Unit ids are ``f"{eid}/{unit index}"``, session ids the
    eids. A batch's unit indices within the session and session indices are mapped to vocabulary
    indices by lookup tables (buffers of :class:`POYOSessions`) rebuilt whenever the vocabularies
    change, so a forward pass does no per-trial Python work; the tokens are built on the batch's
    device.

Readout timestamps
    Wheel speed and whisker motion energy: one query per time bin, at the bin's centre
    ``(t + 1/2) * bin_size_s``, so prediction t is bin t of the targets. Choice and block: one query
    per trial at L / 2, the centre of the window. These are properties of the whole trial, with no
    time of their own in the window; at the centre the query is equally far from the first and the
    last latents, so the rotary relative-time encoding favours neither end of the trial.

New animals
    As the library adds them: fine-tuning (:meth:`POYOPlusModel.init_from_pretrained`) starts from the
    pretrained model's unit and session vocabularies and embeddings, extends them
    (``InfiniteVocabEmbedding.extend_vocab``) with the new session's unit ids and eid (new rows drawn
    at random), copies every other weight, and trains everything. The fine-tuned model keeps the
    pretraining sessions' embeddings (unused) in its vocabularies, while its session vocabulary
    (:attr:`POYOPlusModel.sessions`, what the training loop and the evaluation index) holds the new
    session alone.

Vocabularies in the state dict
    ``InfiniteVocabEmbedding`` saves its vocabulary as a Python dict next to its weight. Here every
    entry of a state dict is a tensor, so the vocabularies (``poyo.unit_emb.vocab``,
    ``poyo.session_emb.vocab``) are saved as UTF-8 JSON lists of words in index order (uint8
    tensors) and decoded before the library's load hook reads them. A model rebuilt by
    :func:`neds.train.load_model` (vocabulary: its own sessions) takes the vocabularies of the state
    dict it loads (a fine-tuned model's: the pretraining sessions' words too), then re-indexes its
    sessions in them.

Workarounds for torch_brain 0.1.0
    * ``POYOPlus`` sizes its task embedding ``Embedding(len(readout_specs))`` but indexes it with
      ``output_decoder_index``, which its tokenizer and ``MultitaskReadout`` take to be the registry
      id (``ModalitySpec.id``, numbered from 1 across the process's whole registry, in order of
      registration): the task with the largest id is out of range, and tasks registered after the
      library's own nineteen (ids 20 and up) all are. The model is given copies of the registered
      specs with ids 0-3 (the task's position in :data:`TASKS`), which are both valid rows of the
      task embedding and the ids the readout selects by, whatever else was registered first.
    * ``InfiniteVocabEmbedding``'s load hook needs the vocabulary and weight entries: a partial
      state dict (``load_state_dict(..., strict=False)`` of the shared weights) would fail with a
      KeyError. Such a load leaves the embeddings as they are and reports their keys missing, as
      any module does.
    * Its load hook refuses a vocabulary other than the one initialised (by design: the library loads
      a checkpoint into an uninitialised model). Before it runs, an embedding whose vocabulary
      differs from the incoming one takes the incoming vocabulary and a weight of its size, in the
      same Parameter object (an optimizer built before a resumed run's load keeps tracking it).

Without xformers (not installed here), torch_brain's attention is
``torch.nn.functional.scaled_dot_product_attention`` with a boolean key mask, on CPU and CUDA alike
(with xformers, on CUDA, its memory-efficient attention with the same mask as a bias): padded events
take no part in it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from torch.nn.parameter import UninitializedParameter
from torch_brain.models import POYOPlus
from torch_brain.nn import InfiniteVocabEmbedding
from torch_brain.nn.loss import CrossEntropyLoss, MSELoss
from torch_brain.registry import MODALITY_REGISTRY, DataType, ModalitySpec, register_modality
from torch_brain.utils import create_linspace_latent_tokens, create_start_end_unit_tokens
from torch_brain.utils.tokenizers import TokenType

from neds.config import schema_defaults
from neds.model.balance import LossTerm, decoding_terms
from neds.model.base import Batch, SessionVocabulary, TrialModel, check_pretrained
from neds.vocab import BEHAVIOURS, DECODING_MODE, DYNAMIC_BEHAVIOURS, N_CLASSES

__all__ = ["POYOPlusConfig", "POYOPlusModel", "POYOPlusOutput", "POYOSessions", "TASKS", "register_tasks"]

TASKS = {name: f"neds_{name}" for name in BEHAVIOURS}
"""POYO+ task (modality registry name) of each behaviour, in :data:`neds.vocab.BEHAVIOURS` order."""
_VOCABULARIES = ("unit_emb", "session_emb")  # the InfiniteVocabEmbedding layers of POYOPlus
_UNNAMED = "<unnamed session {}>"  # vocabulary word of a session not yet named (see POYOSessions)

_DEFAULTS = schema_defaults("poyo_plus")  # the schema is the one source of defaults


def register_tasks() -> dict[str, ModalitySpec]:
    """Register the decoding tasks in torch_brain's modality registry (once per process; calling
    again changes nothing) and return the readout specs the model is built with.

    Wheel and whisker are continuous (one value per query, MSE), choice and block multinomial
    (:data:`neds.vocab.N_CLASSES` classes, cross-entropy). The returned specs are copies of the
    registered ones whose ``id`` is the task's position in :data:`TASKS` (see the module docstring).
    """
    for name in BEHAVIOURS:
        if TASKS[name] in MODALITY_REGISTRY:
            continue
        dynamic = name in DYNAMIC_BEHAVIOURS
        register_modality(
            TASKS[name],
            dim=1 if dynamic else N_CLASSES[name],
            type=DataType.CONTINUOUS if dynamic else DataType.MULTINOMIAL,
            timestamp_key=f"{name}.timestamps",
            value_key=f"{name}.values",
            loss_fn=MSELoss() if dynamic else CrossEntropyLoss(),
        )
    return {TASKS[name]: replace(MODALITY_REGISTRY[TASKS[name]], id=i) for i, name in enumerate(BEHAVIOURS)}


@dataclass
class POYOPlusConfig:
    """Sizes and regularisation of POYO+ (config section ``poyo_plus``; each field's default and
    meaning are the schema's, ``neds/schema/config.schema.yaml``).

    ``dropout`` is POYO+'s ``lin_dropout`` (on the residual branches of the latent layers) and
    ``ffn_dropout`` (inside the feed-forward layers); attention weights are not dropped
    (``atn_dropout`` 0, the library's default). ``n_bins`` and ``bin_size_s`` are not config keys:
    the caller sets them from the binned data; the window, ``n_bins * bin_size_s`` seconds, is the
    model's ``sequence_length``.
    """

    dim: int = _DEFAULTS["dim"]
    depth: int = _DEFAULTS["depth"]
    dim_head: int = _DEFAULTS["dim_head"]
    cross_heads: int = _DEFAULTS["cross_heads"]
    self_heads: int = _DEFAULTS["self_heads"]
    latent_step: float = _DEFAULTS["latent_step"]
    num_latents_per_step: int = _DEFAULTS["num_latents_per_step"]
    dropout: float = _DEFAULTS["dropout"]
    n_bins: int = 100  # time bins per trial: set from the binned data (not a config key)
    bin_size_s: float = 0.02  # seconds per bin: set from the binned data (not a config key)

    def __post_init__(self) -> None:
        self.latent_step, self.bin_size_s = float(self.latent_step), float(self.bin_size_s)
        if self.dim_head % 4:
            # torch_brain's RotaryEmbedding fails on other head sizes (its frequency table is dim_head // 4 long)
            raise ValueError(f"poyo_plus.dim_head {self.dim_head} must be a multiple of 4 (rotary embedding)")
        if self.n_bins < 1 or not self.bin_size_s > 0:
            raise ValueError(f"n_bins {self.n_bins} and bin_size_s {self.bin_size_s} must be positive")
        if not 0 < self.latent_step <= self.sequence_length:
            raise ValueError(
                f"poyo_plus.latent_step {self.latent_step} s must be in (0, {self.sequence_length}], the trial window"
            )

    @property
    def sequence_length(self) -> float:
        """The trial window in seconds (POYO+'s ``sequence_length``)."""
        return float(self.n_bins * self.bin_size_s)


@dataclass
class POYOPlusOutput:
    """POYO+'s readouts of a batch: wheel, whisker (B, T); choice (B, 2) and block (B, 3) logits."""

    wheel: torch.Tensor
    whisker: torch.Tensor
    choice: torch.Tensor
    block: torch.Tensor


def _encode_vocab(vocab: dict[str, int]) -> torch.Tensor:
    """An InfiniteVocabEmbedding vocabulary as a uint8 tensor: its words in index order, UTF-8 JSON."""
    words = [w for w, _ in sorted(vocab.items(), key=lambda item: item[1])]
    return torch.tensor(list(json.dumps(words).encode()), dtype=torch.uint8)


def _decode_vocab(encoded: torch.Tensor) -> OrderedDict[str, int]:
    """The vocabulary (word -> index) saved by :func:`_encode_vocab`."""
    words = json.loads(bytes(encoded.cpu().tolist()).decode())
    return OrderedDict((w, i) for i, w in enumerate(words))


class POYOSessions(SessionVocabulary):
    """The sessions of a POYO+ model (:class:`~neds.model.base.SessionVocabulary`) and their indices
    in POYO+'s unit and session vocabularies.

    The vocabularies themselves live in POYO+'s embedding layers (``unit_emb``, ``session_emb``),
    saved with its weights; the lookup tables here (buffers, not saved: rebuilt from the
    vocabularies by :meth:`index_vocabulary`) map a session index to its vocabulary index and a
    (session, unit) pair to the unit's.

    A session's words are its eid and ``f"{eid}/{unit index}"``. A vocabulary not yet named
    (``eids`` None) uses placeholder eids; naming it (the training loop names it after its data)
    renames those words.

    Parameters
    ----------
    n_units : (S,) long tensor, units of each session (index = session index)
    eids : the session ids in the same order, or None (not named yet)
    unit_emb, session_emb : POYO+'s vocabulary layers (referenced, not registered here)
    """

    def __init__(
        self,
        n_units: torch.Tensor,
        eids: list[str] | None,
        unit_emb: InfiniteVocabEmbedding,
        session_emb: InfiniteVocabEmbedding,
    ):
        super().__init__(n_units, eids)
        n_max = int(n_units.max())
        self._embeddings = (unit_emb, session_emb)  # a tuple: not submodules, saved under the model's poyo
        self._loading = False  # set while a state dict is loaded (its vocabularies are indexed at the end)
        self.register_buffer("unit_index", torch.zeros(len(n_units), n_max, dtype=torch.long), persistent=False)
        self.register_buffer("session_index", torch.zeros(len(n_units), dtype=torch.long), persistent=False)
        self.register_buffer("unit_valid", torch.arange(n_max)[None, :] < n_units[:, None], persistent=False)

    def _set_eids(self, eids: list[str] | None) -> None:
        previous = self.__dict__.get("_eids", None)
        before = self.names()
        SessionVocabulary.eids.fset(self, eids)
        if "_embeddings" not in self.__dict__ or self._loading:
            return
        try:
            if previous is None and self._eids is not None:
                self._rename(before, self.names())
            self.index_vocabulary()
        except ValueError:
            SessionVocabulary.eids.fset(self, previous)
            raise

    eids = property(SessionVocabulary.eids.fget, _set_eids, doc="The session ids (None: not named).")

    def names(self) -> list[str]:
        """The sessions' words in the vocabulary: the eids, or placeholders for a vocabulary not named."""
        eids = self.__dict__.get("_eids", None)
        return list(eids) if eids is not None else [_UNNAMED.format(i) for i in range(len(self.n_units))]

    def words(self) -> tuple[list[str], list[str]]:
        """(unit ids, session ids) of the sessions, in session and unit order."""
        names = self.names()
        units = [f"{name}/{j}" for name, n in zip(names, self.n_units.tolist()) for j in range(n)]
        return units, names

    def _rename(self, before: list[str], after: list[str]) -> None:
        """Rename each session's words from ``before`` to ``after`` (eids) in the vocabularies."""
        unit_emb, session_emb = self._embeddings
        mapping = dict(zip(before, after))
        for n, (old, new) in zip(self.n_units.tolist(), zip(before, after)):
            mapping.update({f"{old}/{j}": f"{new}/{j}" for j in range(n)})
        renamed = [OrderedDict((mapping.get(w, w), i) for w, i in emb.vocab.items()) for emb in self._embeddings]
        if any(len(new) != len(emb.vocab) for new, emb in zip(renamed, self._embeddings)):
            raise ValueError(f"naming the sessions {after} would give two POYO+ vocabulary words the same name")
        unit_emb.vocab, session_emb.vocab = renamed

    def index_vocabulary(self) -> None:
        """Rebuild the lookup tables from the vocabularies; ValueError if a session's eid or one of
        its unit ids is not in them."""
        unit_emb, session_emb = self._embeddings
        names = self.names()
        try:
            sessions = [session_emb.vocab[name] for name in names]
            units = [[unit_emb.vocab[f"{name}/{j}"] for j in range(n)] for name, n in zip(names, self.n_units.tolist())]
        except KeyError as exc:
            raise ValueError(
                f"POYO+'s vocabulary has no word {exc} of the sessions {names}; the weights are not those of this "
                "model's sessions"
            ) from None
        table = torch.zeros(self.unit_index.shape, dtype=torch.long)
        for s, row in enumerate(units):
            table[s, : len(row)] = torch.tensor(row, dtype=torch.long)
        self.unit_index.copy_(table)
        self.session_index.copy_(torch.tensor(sessions, dtype=torch.long))


class POYOPlusModel(TrialModel):
    """POYO+ decoding wheel speed, whisker motion energy, choice and block from spike events.

    Parameters
    ----------
    cfg : POYOPlusConfig
    n_units : list of int, units of each session in the vocabulary (index = session index)
    mode : 'decoding', the only mode (POYO+ is a supervised decoder)
    eids : the session ids of the vocabulary, in the same order (None: named when trained)

    Attributes
    ----------
    poyo : torch_brain.models.POYOPlus, the network, with its unit and session vocabularies
    sessions : POYOSessions, the session vocabulary and its lookup tables into POYO+'s vocabularies.
        The session-specific state is the POYO+ unit and session embeddings (with their
        vocabularies) and :attr:`sessions`; everything else (token-type, task and latent
        embeddings, attention and feed-forward layers, readouts) is shared
        (:meth:`shared_state_dict`) and is what fine-tuning copies.
    """

    architecture = "poyo_plus"
    Config = POYOPlusConfig
    modes = (DECODING_MODE,)
    reads_events = True

    def __init__(
        self, cfg: POYOPlusConfig, n_units: list[int], mode: str = DECODING_MODE, eids: list[str] | None = None
    ):
        super().__init__()
        self.check_mode(mode)
        if not n_units or min(n_units) < 1:
            raise ValueError(f"every session needs at least one unit, got {n_units}")
        self.cfg, self.mode = cfg, mode
        length, n_max = cfg.sequence_length, max(n_units)
        self.poyo = POYOPlus(
            sequence_length=length,
            readout_specs=register_tasks(),
            latent_step=cfg.latent_step,
            num_latents_per_step=cfg.num_latents_per_step,
            dim=cfg.dim,
            depth=cfg.depth,
            dim_head=cfg.dim_head,
            cross_heads=cfg.cross_heads,
            self_heads=cfg.self_heads,
            ffn_dropout=cfg.dropout,
            lin_dropout=cfg.dropout,
            atn_dropout=0.0,
        )
        for name in (*_VOCABULARIES, "token_type_emb", "task_emb", "latent_emb"):
            getattr(self.poyo, name).no_weight_decay = ("weight",)  # embeddings: see neds.train.param_groups
        self.sessions = POYOSessions(
            torch.tensor(n_units, dtype=torch.long), eids, self.poyo.unit_emb, self.poyo.session_emb
        )
        unit_words, session_words = self.sessions.words()
        self.poyo.unit_emb.initialize_vocab(unit_words)
        self.poyo.session_emb.initialize_vocab(session_words)
        self.sessions.index_vocabulary()

        # the tokens every trial shares: start and end tokens of the unit slots, latents, output queries
        se_type, se_slot, se_time = create_start_end_unit_tokens(range(n_max), 0.0, length)
        self.register_buffer("se_type", torch.from_numpy(se_type).long(), persistent=False)
        self.register_buffer("se_slot", torch.from_numpy(se_slot).long(), persistent=False)
        self.register_buffer("se_time", torch.from_numpy(se_time).float(), persistent=False)
        latent_index, latent_time = create_linspace_latent_tokens(
            0.0, length, cfg.latent_step, cfg.num_latents_per_step
        )
        self.register_buffer("latent_index", torch.from_numpy(latent_index).long(), persistent=False)
        self.register_buffer("latent_time", torch.from_numpy(latent_time).float(), persistent=False)
        t = cfg.n_bins
        centres = (torch.arange(t, dtype=torch.float64) + 0.5) * cfg.bin_size_s
        times = [centres if name in DYNAMIC_BEHAVIOURS else torch.tensor([length / 2]) for name in BEHAVIOURS]
        specs = self.poyo.readout.readout_specs
        tasks = [torch.full((len(x),), specs[TASKS[name]].id) for name, x in zip(BEHAVIOURS, times)]
        self.register_buffer("output_time", torch.cat(times).float(), persistent=False)
        self.register_buffer("output_task", torch.cat(tasks).long(), persistent=False)

        self.register_state_dict_post_hook(_save_vocabularies)
        self.register_load_state_dict_pre_hook(_load_vocabularies)
        self.register_load_state_dict_post_hook(_index_loaded_vocabularies)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, with POYO+'s vocabularies taken from ``state_dict`` (see the
        module docstring) and the sessions re-indexed in them."""
        try:
            return super().load_state_dict(state_dict, strict, assign)
        finally:
            self.sessions._loading = False

    # ------------------------------------------------------------------ shared and session-specific
    def _session_specific(self, key: str) -> bool:
        return key.startswith(("sessions.", *(f"poyo.{name}." for name in _VOCABULARIES)))

    def shared_state_dict(self) -> dict[str, torch.Tensor]:
        """The state shared across sessions: everything but POYO+'s unit and session embeddings
        (and their vocabularies) and :attr:`sessions` (token-type, task and latent embeddings,
        encoder, latent layers, decoder, readouts)."""
        return {k: v for k, v in self.state_dict().items() if not self._session_specific(k)}

    def n_shared_parameters(self) -> int:
        specific = {id(p) for name in _VOCABULARIES for p in getattr(self.poyo, name).parameters()}
        specific |= {id(p) for p in self.sessions.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in specific)

    def init_from_pretrained(self, pretrained: dict[str, torch.Tensor], source: str = "") -> list[str]:
        """Start fine-tuning from a pretrained POYO+ model's state dict, the library's way: its unit
        and session vocabularies and embeddings, extended with this model's sessions (their unit
        ids and eids; words the pretrained model knew keep their embeddings, new ones are drawn at
        random), and a copy of its shared state (:meth:`shared_state_dict`). Returns the names of
        the copied shared tensors; ValueError (naming ``source``) if the models differ."""
        shared = self.shared_state_dict()
        vocab_keys = [f"poyo.{name}.{part}" for name in _VOCABULARIES for part in ("vocab", "weight")]
        missing = [k for k in vocab_keys if k not in pretrained]  # their shapes are the pretrained model's own
        what = f"pretrained checkpoint {source} does not match the model"
        check_pretrained(shared, pretrained, [*shared, *missing], what, "fine-tune with the pretraining model config")
        for name, words in zip(_VOCABULARIES, self.sessions.words()):
            emb = getattr(self.poyo, name)
            device = emb.weight.device
            vocab, weight = _decode_vocab(pretrained[f"poyo.{name}.vocab"]), pretrained[f"poyo.{name}.weight"]
            if weight.shape != (len(vocab), emb.embedding_dim):
                raise ValueError(f"pretrained checkpoint {source}: poyo.{name} does not match its vocabulary")
            emb.vocab, emb.weight = None, UninitializedParameter()  # uninitialised: it takes the checkpoint's
            emb.load_state_dict({"weight": weight.detach().clone(), "vocab": vocab})
            emb.extend_vocab(words, exist_ok=True)
            emb.to(device)
        self.load_state_dict({k: pretrained[k] for k in shared}, strict=False)  # re-indexes the sessions
        return list(shared)

    # ------------------------------------------------------------------ forward
    def tokens(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The keyword arguments of ``POYOPlus.forward`` for a batch (see the module docstring)."""
        if batch.event_time is None or batch.event_unit is None or batch.event_mask is None:
            raise ValueError("POYO+ reads spike events: load the data with events (load_sessions(..., events=True))")
        sl, s = self.sessions, batch.session
        b = s.shape[0]
        units = sl.unit_index[s]  # (B, N) vocabulary index of each unit slot
        se_unit = units[:, self.se_slot]
        se_mask = sl.unit_valid[s][:, self.se_slot]
        mask = batch.event_mask
        ev_unit = torch.gather(units, 1, batch.event_unit.clamp(0, units.shape[1] - 1))
        ev_unit = torch.where(mask, ev_unit, 0)  # padding: the reserved word "NA", as the library pads
        ev_time = torch.where(mask, batch.event_time.float(), 0.0)
        ev_type = torch.full_like(ev_unit, TokenType.DEFAULT.value)
        n_out = self.output_time.shape[0]
        return {
            "input_unit_index": torch.cat((se_unit, ev_unit), 1),
            "input_timestamps": torch.cat((self.se_time.expand(b, -1), ev_time), 1),
            "input_token_type": torch.cat((self.se_type.expand(b, -1), ev_type), 1),
            "input_mask": torch.cat((se_mask, mask), 1),
            "latent_index": self.latent_index.expand(b, -1),
            "latent_timestamps": self.latent_time.expand(b, -1),
            "output_session_index": sl.session_index[s][:, None].expand(-1, n_out),
            "output_timestamps": self.output_time.expand(b, -1),
            "output_decoder_index": self.output_task.expand(b, -1),
        }

    def forward(self, batch: Batch, masks=None) -> POYOPlusOutput:
        """POYO+'s readouts of the batch (``masks``: None, POYO+ masks nothing)."""
        b, t = batch.wheel.shape
        if t != self.cfg.n_bins:
            raise ValueError(f"batch has {t} time bins, the model {self.cfg.n_bins}")
        out = self.poyo(**self.tokens(batch))
        return POYOPlusOutput(
            wheel=out[TASKS["wheel"]].reshape(b, t),
            whisker=out[TASKS["whisker"]].reshape(b, t),
            choice=out[TASKS["choice"]].reshape(b, N_CLASSES["choice"]),
            block=out[TASKS["block"]].reshape(b, N_CLASSES["block"]),
        )

    # ------------------------------------------------------------------ training and prediction
    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Decoding predictions: ``wheel``, ``whisker`` (B, T), ``choice_prob`` (B, 2), ``block_prob`` (B, 3)."""
        out = self(batch)
        return {
            "wheel": out.wheel.float(),
            "whisker": out.whisker.float(),
            "choice_prob": torch.softmax(out.choice.float(), -1),
            "block_prob": torch.softmax(out.block.float(), -1),
        }

    def loss_terms(self, out: POYOPlusOutput, batch: Batch, masks=None) -> dict[str, LossTerm]:
        """The decoding losses, as NEDS's decoding loss with every behaviour token masked
        (:func:`~neds.model.balance.decoding_terms`)."""
        return decoding_terms(out, batch)


# ---------------------------------------------------------------------------------------- state dict hooks
def _save_vocabularies(module: POYOPlusModel, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """State dict post-hook: POYO+'s vocabularies as uint8 tensors, so every entry is a tensor."""
    for name in _VOCABULARIES:
        key = f"{prefix}poyo.{name}.vocab"
        if isinstance(state_dict.get(key), dict):
            state_dict[key] = _encode_vocab(state_dict[key])


def _load_vocabularies(
    module: POYOPlusModel,
    state_dict: dict,
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: list,
    unexpected_keys: list,
    error_msgs: list,
) -> None:
    """Load pre-hook, before InfiniteVocabEmbedding's own: decode the saved vocabularies and make
    each embedding take the incoming vocabulary (see the module docstring)."""
    module.sessions._loading = True
    for name in _VOCABULARIES:
        emb = getattr(module.poyo, name)
        vocab_key, weight_key = f"{prefix}poyo.{name}.vocab", f"{prefix}poyo.{name}.weight"
        if vocab_key not in state_dict and weight_key not in state_dict:
            # the embedding keeps its state, and the keys are reported missing (an error if strict)
            state_dict[vocab_key], state_dict[weight_key] = OrderedDict(emb.vocab), emb.weight.detach()
            missing_keys.extend((weight_key, vocab_key))
            continue
        if vocab_key not in state_dict or weight_key not in state_dict:
            raise RuntimeError(f"the state dict has no POYO+ vocabulary or weight for {prefix}poyo.{name}")
        incoming = state_dict[vocab_key]
        # a copy either way: the library's hook consumes the dict it is given
        incoming = _decode_vocab(incoming) if torch.is_tensor(incoming) else OrderedDict(incoming)
        state_dict[vocab_key] = incoming
        if set(incoming) != set(emb.vocab):
            emb.vocab = OrderedDict(sorted(incoming.items(), key=lambda item: item[1]))
            emb.weight.data = emb.weight.data.new_empty(len(incoming), emb.embedding_dim)


def _index_loaded_vocabularies(module: POYOPlusModel, incompatible_keys) -> None:
    """Load post-hook: index the sessions (named by the loaded state) in the loaded vocabularies."""
    module.sessions._loading = False
    try:
        module.sessions.index_vocabulary()
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
