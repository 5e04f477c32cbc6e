"""Generative model of IBL repeated-site sessions: task, behaviour, probes and spiking units.

Pure numpy (and scipy); no I/O. :func:`simulate_session` returns one
:class:`SimulatedSession` holding everything :mod:`neds.simulate.alf` writes to disk, plus the
exact expected spike count of every unit in every bin of every trial window (ground truth).

Model in brief
--------------
Task (IBL biased-choice world): 90 unbiased trials (probabilityLeft 0.5), then alternating
0.2/0.8 blocks of 20-100 trials; stimulus side from the block prior, contrast from
{1, .25, .125, .0625, 0}; choice from a psychometric curve with block bias and lapses; lognormal
reaction times that are slower at low contrast; a few invalid trials (no-go, NaN stimOn,
NaN feedback, reaction time > 10 s).

Behaviour: a wheel turned in the choice direction after movement onset (minimum-jerk velocity
bump) with small jitters between trials, recorded as irregular encoder events; whisker motion
energy at 60 Hz that rises with wheel speed and licking after reward, plus its own slow AR
fluctuation and camera noise.

Neurons: the log firing rate of unit ``u`` on a 5 ms grid is

    log r_u(t) = log(b_u) + g_u(t) * s_u(t) + m_u(t) + c_u(t) + f_u(t)
                 + w_block * block(t) + w_speed * speed(t) + w_whisk * whisk(t) + lambda_u . z(t)

with ``s_u`` the stimulus response (unsigned and contralateral-signed contrast through a
contrast response function, convolved with a unit-specific kernel), ``g_u(t) =
(1 + kappa_u * block(t)) * (1 - a_u * moving(t))`` a multiplicative gain (stimulus x block prior,
stimulus x movement), ``m_u``/``c_u`` movement and choice kernels around movement onset
(pre-movement ramp and post-movement), ``f_u`` feedback kernels, and ``z(t)`` a 2-4 dimensional
Ornstein-Uhlenbeck latent (100-500 ms) plus a slow drift (30-120 s), shared by the units of a
session with per-unit loadings. Every unit draws its baseline rate,
kernel latencies and weights from the template of its brain region (:data:`REGION_TEMPLATES`);
animals share the templates and differ in units, probe boundaries and a gain. Spikes are
Poisson in continuous time for the piecewise-constant rate.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass, field

import numpy as np
from scipy import signal, special

from neds.vocab import HELDOUT_ROLE, PRETRAIN_ROLE

__all__ = [
    "SIM_REGIONS",
    "REGION_TEMPLATES",
    "RegionTemplate",
    "SimulationConfig",
    "SimulatedSession",
    "ProbeData",
    "session_eids",
    "session_role",
    "simulate_session",
    "window_edges",
]

SIM_REGIONS: tuple[str, ...] = ("VISa", "CA1", "DG", "LP", "PO")
"""Beryl acronyms of the repeated-site targets."""

LABS: tuple[str, ...] = (
    "cortexlab",
    "churchlandlab",
    "danlab",
    "hoferlab",
    "mainenlab",
    "wittenlab",
    "zadorlab",
    "angelakilab",
    "steinmetzlab",
)
MISSABLE_DATASETS: frozenset[str] = frozenset({"motion_energy", "wheel"})
CONTRASTS = np.array([1.0, 0.25, 0.125, 0.0625, 0.0])
CONTRAST_PROBS = np.array([2, 2, 2, 2, 1]) / 9.0  # zero contrast half as frequent, as in ephysChoiceWorld
N_CHANNELS = 384
WHEEL_RESOLUTION_RAD = 2 * np.pi / (1024 * 4)  # 1024-line rotary encoder, X4 decoding
DT = 0.005  # s, rate grid
WHEEL_FS = 1000  # Hz, wheel simulation grid (an integer multiple of 1 / DT)
CAMERA_FS = 60.0  # Hz
NOGO_TIMEOUT_S = 60.0
N_UNBIASED_TRIALS = 90
MAX_RATE_HZ = 250.0
SLOW_DRIFT_SD = 0.1  # sd of the per-unit loadings on the slow drift (log-rate units)
_EID_NAMESPACE = uuid.uuid3(uuid.NAMESPACE_URL, "https://github.com/neds/simulate")
_BASE_DATE = _dt.date(2022, 1, 3)

# Allen CCF 2017 (sub)structures on the probe, from the tip upwards within each region:
# (acronym, id, fraction of the region's extent)
_REGION_LAYERS: dict[str, tuple[tuple[str, int, float], ...]] = {
    "PO": (("PO", 1020, 1.0),),
    "LP": (("LP", 218, 1.0),),
    # DG crossed from below: granule layer, hilus (polymorph), granule layer, molecular layer
    "DG": (("DG-sg", 632, 0.2), ("DG-po", 10704, 0.3), ("DG-sg", 632, 0.15), ("DG-mo", 10703, 0.35)),
    # CA1 from the fissure up: lacunosum-moleculare, radiatum, pyramidale, oriens
    "CA1": (("CA1slm", 391, 0.2), ("CA1sr", 415, 0.35), ("CA1sp", 407, 0.15), ("CA1so", 399, 0.3)),
    # VISa from layer 6b up to layer 1
    "VISa": (
        ("VISa6b", 312782570, 0.05),
        ("VISa6a", 312782566, 0.2),
        ("VISa5", 312782562, 0.25),
        ("VISa4", 312782558, 0.15),
        ("VISa2/3", 312782554, 0.25),
        ("VISa1", 312782550, 0.1),
    ),
}
_ACRONYM_OF_ID = {allen_id: acronym for layers in _REGION_LAYERS.values() for acronym, allen_id, _ in layers}
_REGION_OF_ID = {allen_id: region for region, layers in _REGION_LAYERS.items() for _, allen_id, _ in layers}
_ROOT_ID, _VOID_ID = 997, 0
# extent of each region along the probe, tip (y = 0) upwards, in um; jittered per animal
_REGION_EXTENT_UM: dict[str, float] = {"PO": 550.0, "LP": 500.0, "DG": 450.0, "CA1": 400.0, "VISa": 900.0}
_PROBE_ORDER = ("PO", "LP", "DG", "CA1", "VISa")


@dataclass(frozen=True)
class RegionTemplate:
    """How the units of one region respond; every unit draws its own parameters from it.

    Weights are in log-rate units, given as (mean, sd) of a normal draw per unit. Kernels peak at 1.

    Attributes
    ----------
    base_rate_hz, base_rate_log_sd : median and log-sd of the lognormal baseline rate (Hz)
    stim_latency_s, stim_tau_s : alpha-kernel latency and time-to-peak of the stimulus response
    w_stim, w_contra : weight on unsigned contrast and on contralateral-signed contrast
    move_peak_s, move_sd_pre_s, move_sd_post_s : movement kernel around firstMovement
    w_move, w_choice : weight on movement (unsigned) and on choice (signed, -1/+1)
    fb_latency_s, fb_tau_s : feedback alpha kernel
    w_feedback, w_reward : weight on feedback (unsigned) and on reward vs error (signed)
    w_block, w_speed, w_whisk : weights on the block prior (-1/0/+1), wheel speed, whisking
    kappa_block, a_move : stimulus gain modulation by block prior and suppression during movement
    latent_sd : sd of the loadings on the shared latent
    density : relative unit density on the region's channels
    """

    base_rate_hz: float
    base_rate_log_sd: float
    stim_latency_s: float
    stim_tau_s: float
    w_stim: tuple[float, float]
    w_contra: tuple[float, float]
    move_peak_s: float
    move_sd_pre_s: float
    move_sd_post_s: float
    w_move: tuple[float, float]
    w_choice: tuple[float, float]
    fb_latency_s: float
    fb_tau_s: float
    w_feedback: tuple[float, float]
    w_reward: tuple[float, float]
    w_block: tuple[float, float]
    w_speed: tuple[float, float]
    w_whisk: tuple[float, float]
    kappa_block: tuple[float, float]
    a_move: tuple[float, float]
    latent_sd: float
    density: float


REGION_TEMPLATES: dict[str, RegionTemplate] = {
    # visual cortex: fast visual response, contralateral preference, block-modulated gain
    "VISa": RegionTemplate(
        base_rate_hz=5.0,
        base_rate_log_sd=0.8,
        stim_latency_s=0.05,
        stim_tau_s=0.05,
        w_stim=(0.5, 0.3),
        w_contra=(0.35, 0.25),
        move_peak_s=0.05,
        move_sd_pre_s=0.15,
        move_sd_post_s=0.25,
        w_move=(0.2, 0.25),
        w_choice=(0.08, 0.1),
        fb_latency_s=0.06,
        fb_tau_s=0.12,
        w_feedback=(0.15, 0.2),
        w_reward=(0.1, 0.15),
        w_block=(0.03, 0.05),
        w_speed=(0.1, 0.15),
        w_whisk=(0.1, 0.15),
        kappa_block=(0.3, 0.15),
        a_move=(0.3, 0.15),
        latent_sd=0.3,
        density=1.0,
    ),
    # hippocampus CA1: slow weak visual response, reward and running related, strong latent
    "CA1": RegionTemplate(
        base_rate_hz=3.0,
        base_rate_log_sd=1.0,
        stim_latency_s=0.14,
        stim_tau_s=0.16,
        w_stim=(0.15, 0.15),
        w_contra=(0.05, 0.1),
        move_peak_s=0.2,
        move_sd_pre_s=0.2,
        move_sd_post_s=0.4,
        w_move=(0.25, 0.25),
        w_choice=(0.03, 0.06),
        fb_latency_s=0.15,
        fb_tau_s=0.3,
        w_feedback=(0.4, 0.3),
        w_reward=(0.3, 0.25),
        w_block=(0.05, 0.06),
        w_speed=(0.35, 0.25),
        w_whisk=(0.1, 0.1),
        kappa_block=(0.1, 0.1),
        a_move=(0.1, 0.1),
        latent_sd=0.45,
        density=0.8,
    ),
    # dentate gyrus: low rates, slow weak responses, running related
    "DG": RegionTemplate(
        base_rate_hz=1.5,
        base_rate_log_sd=1.0,
        stim_latency_s=0.18,
        stim_tau_s=0.2,
        w_stim=(0.1, 0.1),
        w_contra=(0.0, 0.1),
        move_peak_s=0.25,
        move_sd_pre_s=0.25,
        move_sd_post_s=0.45,
        w_move=(0.15, 0.2),
        w_choice=(0.02, 0.05),
        fb_latency_s=0.15,
        fb_tau_s=0.35,
        w_feedback=(0.3, 0.25),
        w_reward=(0.15, 0.15),
        w_block=(0.04, 0.05),
        w_speed=(0.4, 0.25),
        w_whisk=(0.05, 0.1),
        kappa_block=(0.1, 0.1),
        a_move=(0.1, 0.1),
        latent_sd=0.4,
        density=0.6,
    ),
    # lateral posterior thalamus: high rates, fastest and strongest visual response, movement
    "LP": RegionTemplate(
        base_rate_hz=9.0,
        base_rate_log_sd=0.6,
        stim_latency_s=0.035,
        stim_tau_s=0.035,
        w_stim=(0.7, 0.3),
        w_contra=(0.45, 0.25),
        move_peak_s=0.1,
        move_sd_pre_s=0.1,
        move_sd_post_s=0.2,
        w_move=(0.45, 0.3),
        w_choice=(0.1, 0.1),
        fb_latency_s=0.05,
        fb_tau_s=0.1,
        w_feedback=(0.2, 0.2),
        w_reward=(0.1, 0.15),
        w_block=(0.02, 0.04),
        w_speed=(0.2, 0.2),
        w_whisk=(0.2, 0.2),
        kappa_block=(0.2, 0.15),
        a_move=(0.4, 0.15),
        latent_sd=0.3,
        density=1.2,
    ),
    # posterior thalamus: somatosensory, whisking and movement dominated, weak visual response
    "PO": RegionTemplate(
        base_rate_hz=7.0,
        base_rate_log_sd=0.6,
        stim_latency_s=0.045,
        stim_tau_s=0.04,
        w_stim=(0.25, 0.25),
        w_contra=(0.1, 0.15),
        move_peak_s=0.03,
        move_sd_pre_s=0.2,
        move_sd_post_s=0.2,
        w_move=(0.35, 0.3),
        w_choice=(0.05, 0.08),
        fb_latency_s=0.05,
        fb_tau_s=0.1,
        w_feedback=(0.2, 0.2),
        w_reward=(0.05, 0.1),
        w_block=(0.02, 0.04),
        w_speed=(0.2, 0.2),
        w_whisk=(0.5, 0.25),
        kappa_block=(0.1, 0.1),
        a_move=(0.2, 0.1),
        latent_sd=0.3,
        density=1.0,
    ),
}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Everything is deterministic given ``seed`` and the session index.

    Attributes
    ----------
    n_pretrain_sessions, n_heldout_sessions : sessions 0..P-1 are pretraining, P..P+H-1 held out;
        every session is its own animal.
    n_units : (min, max) units per session (all probes), drawn uniformly.
    n_trials : (min, max) trials per session, drawn uniformly.
    n_probes : (min, max) probes per session (1 or 2), drawn uniformly; units split between them.
    seed : master seed.
    missing_datasets : session index -> datasets not written ('motion_energy', 'wheel').
    bin_size_s : bin size of the ground-truth expected counts (s).
    window_s : (start, end) of the trial window around stimOn_times (s).
    """

    n_pretrain_sessions: int = 4
    n_heldout_sessions: int = 2
    n_units: tuple[int, int] = (60, 120)
    n_trials: tuple[int, int] = (250, 350)
    n_probes: tuple[int, int] = (1, 2)
    seed: int = 0
    missing_datasets: dict[int, tuple[str, ...]] = field(default_factory=dict)
    bin_size_s: float = 0.02
    window_s: tuple[float, float] = (-0.5, 1.5)

    def __post_init__(self) -> None:
        if self.n_pretrain_sessions < 0 or self.n_heldout_sessions < 0:
            raise ValueError(
                f"n_pretrain_sessions={self.n_pretrain_sessions}, n_heldout_sessions={self.n_heldout_sessions}: "
                "session counts must be >= 0"
            )
        if self.n_sessions < 1:
            raise ValueError("no session to simulate: set n_pretrain_sessions + n_heldout_sessions >= 1")
        for name, lo_min in (("n_units", 1), ("n_trials", 20), ("n_probes", 1)):
            lo, hi = getattr(self, name)
            if not lo_min <= lo <= hi:
                raise ValueError(f"{name}={(lo, hi)} must be (min, max) with {lo_min} <= min <= max")
            object.__setattr__(self, name, (int(lo), int(hi)))  # YAML gives lists
        object.__setattr__(self, "window_s", tuple(float(w) for w in self.window_s))
        if self.n_probes[1] > 2:
            raise ValueError(f"n_probes={self.n_probes}: at most 2 probes per session are simulated; set max <= 2")
        if self.n_units[0] < self.n_probes[1]:
            raise ValueError(
                f"n_units min {self.n_units[0]} is smaller than n_probes max {self.n_probes[1]}; "
                "every probe needs at least one unit"
            )
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")
        # keys may arrive as strings and values as lists (YAML/JSON): normalise to int -> tuple
        missing = {
            int(index): (names,) if isinstance(names, str) else tuple(names)
            for index, names in self.missing_datasets.items()
        }
        object.__setattr__(self, "missing_datasets", missing)
        for index, names in missing.items():
            if not 0 <= index < self.n_sessions:
                raise ValueError(
                    f"missing_datasets names session {index}, but sessions are 0..{self.n_sessions - 1}; "
                    "fix the session index"
                )
            unknown = set(names) - MISSABLE_DATASETS
            if unknown:
                raise ValueError(
                    f"missing_datasets[{index}] = {names}: unknown {sorted(unknown)}; "
                    f"choose from {sorted(MISSABLE_DATASETS)}"
                )
        if not self.bin_size_s > 0:
            raise ValueError(f"bin_size_s={self.bin_size_s} must be > 0")
        window_edges(self.window_s, self.bin_size_s)  # raises if the window is not a whole number of bins

    @property
    def n_sessions(self) -> int:
        return self.n_pretrain_sessions + self.n_heldout_sessions


@dataclass
class ProbeData:
    """One probe's channels, clusters and spikes, in IBL ALF units and dtypes.

    Attributes
    ----------
    name : 'probe00' or 'probe01'
    channels : ALF channels object: brainLocationIds_ccf_2017 (384,) int, mlapdv (384, 3) um,
        localCoordinates (384, 2) um, rawInd (384,)
    clusters : ALF clusters object: channels (C,) int, depths (C,) um, uuids (C,) str
    spikes : ALF spikes object: times (N,) float64 s sorted, clusters (N,) uint32,
        amps (N,) float64 V, depths (N,) float32 um
    """

    name: str
    channels: dict[str, np.ndarray]
    clusters: dict[str, np.ndarray]
    spikes: dict[str, np.ndarray]


@dataclass
class SimulatedSession:
    """One simulated session (one animal) with its ground truth.

    Attributes
    ----------
    eid, index, role : session id, index in the config, 'pretrain' or 'heldout'
    lab, subject, date, number : ALF session path parts
    trials : ALF trials object (K trials), as IBL extracts it (NaN where extraction fails)
    wheel : {'timestamps', 'position'}: encoder events (s, rad)
    camera : {'times', 'ROIMotionEnergy'}: left camera frames at 60 Hz
    probes : one :class:`ProbeData` per probe
    expected_counts : (K, T, U) float32, expected spike count per trial window bin; NaN rows for
        trials whose recorded stimOn_times is NaN. Units are probe00 clusters then probe01 clusters.
    bin_centres_s : (T,) bin centres relative to stimOn_times (s)
    units : per-unit ground truth, (U,) arrays: probe, cluster_id, region, allen_id, channel,
        depth_um, uuid, and the drawn template parameters
    missing_datasets : datasets not written for this session
    duration_s : session length (s)
    """

    eid: str
    index: int
    role: str
    lab: str
    subject: str
    date: _dt.date
    number: int
    trials: dict[str, np.ndarray]
    wheel: dict[str, np.ndarray]
    camera: dict[str, np.ndarray]
    probes: list[ProbeData]
    expected_counts: np.ndarray
    bin_centres_s: np.ndarray
    units: dict[str, np.ndarray]
    missing_datasets: tuple[str, ...]
    duration_s: float

    @property
    def rel_session_path(self) -> str:
        """'<lab>/Subjects/<subject>/<YYYY-MM-DD>/<NNN>'"""
        return f"{self.lab}/Subjects/{self.subject}/{self.date.isoformat()}/{self.number:03d}"


# --------------------------------------------------------------------------------------------
# identities
# --------------------------------------------------------------------------------------------


def session_eids(seed: int, n_sessions: int) -> list[str]:
    """Session ids of a simulation: name-based UUID strings of (seed, index), index 0..n_sessions-1.

    Pure and deterministic; indices below ``n_pretrain_sessions`` are pretraining sessions,
    the rest held out. The ids are version-3 (MD5) UUIDs: ONE accepts only versions 3 and 4 as
    session ids (``one.alf.spec.is_uuid``; ``One.eid2path`` raises on a version-5 UUID).
    """
    if n_sessions < 0:
        raise ValueError(f"n_sessions={n_sessions} must be >= 0")
    return [str(uuid.uuid3(_EID_NAMESPACE, f"seed={int(seed)}/session={i}")) for i in range(n_sessions)]


def session_role(config: SimulationConfig, index: int) -> str:
    """'pretrain' for indices below ``n_pretrain_sessions``, else 'heldout'."""
    return PRETRAIN_ROLE if index < config.n_pretrain_sessions else HELDOUT_ROLE


def window_edges(window_s: tuple[float, float], bin_size_s: float) -> np.ndarray:
    """Bin edges (T + 1,) relative to stimOn_times (s), for a window of a whole number of bins."""
    start, end = window_s
    n = (end - start) / bin_size_s
    if end <= start or abs(n - round(n)) > 1e-6:
        raise ValueError(
            f"window_s={window_s} is not a whole number of {bin_size_s} s bins; "
            "choose a window whose length is a multiple of bin_size_s"
        )
    return start + bin_size_s * np.arange(int(round(n)) + 1)


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Independent stream per (seed, session index, purpose): changing one part (e.g. unit
    counts) leaves the others (e.g. the task) unchanged."""
    return np.random.default_rng([int(seed), int(index), stream])


_STREAM_META, _STREAM_TASK, _STREAM_BEHAVIOUR, _STREAM_PROBES, _STREAM_LATENT, _STREAM_SPIKES = range(6)


# --------------------------------------------------------------------------------------------
# task
# --------------------------------------------------------------------------------------------


@dataclass
class _Task:
    """Recorded trials table plus the hidden truth behind it."""

    trials: dict[str, np.ndarray]
    stim_on: np.ndarray  # (K,) true stimulus onset (s)
    movement_on: np.ndarray  # (K,) true movement onset, NaN for no-go
    movement_end: np.ndarray  # (K,) end of the choice movement, NaN for no-go
    feedback: np.ndarray  # (K,) true feedback time
    quiescent_start: np.ndarray  # (K,) start of the quiescent period before the stimulus
    duration_s: float


def _block_prior(rng: np.random.Generator, n_trials: int) -> np.ndarray:
    """probabilityLeft (K,): 0.5 for the first 90 trials, then alternating 0.2/0.8 blocks whose
    lengths are exponential (mean 60) truncated to [20, 100] trials; the first block is random."""
    p_left = np.full(n_trials, 0.5)
    side = rng.choice([0.2, 0.8])
    i = N_UNBIASED_TRIALS
    while i < n_trials:
        length = 0
        while not 20 <= length <= 100:
            length = int(round(rng.exponential(60.0)))
        p_left[i : i + length] = side
        side = 0.8 if side == 0.2 else 0.2
        i += length
    return p_left


def _simulate_task(rng: np.random.Generator, n_trials: int) -> _Task:
    """IBL biased-choice world: stimuli, choices, timing and a few invalid trials.

    Conventions (IBL): a stimulus on the right is answered with choice -1, on the left with +1;
    no-go is choice 0; feedbackType +1 correct, -1 error; the side without a stimulus has NaN
    contrast.
    """
    K = n_trials
    p_left = _block_prior(rng, K)
    stim_left = rng.random(K) < p_left
    contrast = rng.choice(CONTRASTS, size=K, p=CONTRAST_PROBS)
    signed = np.where(stim_left, -contrast, contrast)  # > 0: stimulus on the right
    # animal-specific psychometric curve: P(choice -1) as a function of signed contrast
    sigma = rng.uniform(0.08, 0.16)
    bias_scale = rng.uniform(0.06, 0.14)
    lapse_low, lapse_high = rng.uniform(0.02, 0.1, size=2)
    bias = bias_scale * (p_left - 0.5) / 0.3  # left-likely block -> fewer -1 (rightward-stimulus) choices
    p_right = lapse_low + (1 - lapse_low - lapse_high) * special.ndtr((signed - bias) / sigma)
    choice = np.where(rng.random(K) < p_right, -1.0, 1.0)
    correct = (choice == -1.0) == ~stim_left
    # reaction times: lognormal, median rt0 at full contrast, about twice as slow at zero contrast
    rt0 = rng.uniform(0.2, 0.32)
    rt = np.exp(np.log(rt0 * (1.0 + (1.0 - contrast) ** 2)) + 0.45 * rng.standard_normal(K))
    rt = np.maximum(rt, 0.08)
    move_dur = rng.uniform(0.15, 0.6, K)
    quiescent = rng.uniform(0.2, 0.6, K)
    # wheel jitter during the ITI resets the quiescence timer in some trials
    extra_wait = rng.exponential(0.4, K) * (rng.random(K) < 0.3)
    gap = rng.uniform(0.01, 0.05, K)

    # invalid trials (2-4 %, at least one of each kind), never among the first 10 trials
    n_bad = max(4, int(round(K * rng.uniform(0.02, 0.04))))
    bad = rng.choice(np.arange(10, K), size=n_bad, replace=False)
    kind = np.full(K, -1)
    kind[bad] = np.arange(n_bad) % 4  # 0 no-go, 1 NaN stimOn, 2 NaN feedback, 3 RT > 10 s
    nogo = kind == 0
    rt[kind == 3] = rng.uniform(10.5, 25.0, np.sum(kind == 3))
    choice[nogo] = 0.0
    correct[nogo] = False

    t = rng.uniform(2.0, 4.0)  # first trial start
    start, stim_on, move_on, move_end, feedback, end, q_start = (np.empty(K) for _ in range(7))
    for k in range(K):
        start[k] = t
        q_start[k] = t + extra_wait[k]
        stim_on[k] = q_start[k] + quiescent[k]
        if nogo[k]:
            move_on[k] = move_end[k] = np.nan
            response = stim_on[k] + NOGO_TIMEOUT_S
        else:
            move_on[k] = stim_on[k] + rt[k]
            move_end[k] = move_on[k] + move_dur[k]
            response = move_end[k]
        feedback[k] = response + 1e-4
        end[k] = feedback[k] + (1.0 if correct[k] else 2.0)
        t = end[k] + gap[k]
    response_times = np.where(nogo, stim_on + NOGO_TIMEOUT_S, move_end)

    rec_stim = np.where(kind == 1, np.nan, stim_on)
    rec_feedback = np.where(kind == 2, np.nan, feedback)
    trials = {
        "intervals": np.c_[start, end],
        "stimOn_times": rec_stim,
        "goCue_times": stim_on + 1e-4,
        "firstMovement_times": move_on.copy(),
        "response_times": response_times,
        "feedback_times": rec_feedback,
        "choice": choice,
        "feedbackType": np.where(correct, 1.0, -1.0),
        "probabilityLeft": p_left,
        "contrastLeft": np.where(stim_left, contrast, np.nan),
        "contrastRight": np.where(stim_left, np.nan, contrast),
    }
    return _Task(
        trials=trials,
        stim_on=stim_on,
        movement_on=move_on,
        movement_end=move_end,
        feedback=feedback,
        quiescent_start=q_start,
        duration_s=float(end[-1] + rng.uniform(5.0, 10.0)),
    )


# --------------------------------------------------------------------------------------------
# behaviour: wheel and whisker motion energy
# --------------------------------------------------------------------------------------------


def _add_bumps(
    velocity: np.ndarray, fs: float, onsets: np.ndarray, durations: np.ndarray, amplitudes: np.ndarray
) -> None:
    """Add minimum-jerk velocity bumps (each integrating to its amplitude) in place."""
    for onset, dur, amp in zip(onsets, durations, amplitudes):
        i0 = int(np.ceil(onset * fs))
        n = int(dur * fs)
        if n < 2 or i0 + n > velocity.size:
            continue
        tau = (np.arange(n) + 0.5) / n
        velocity[i0 : i0 + n] += amp / dur * 30.0 * tau**2 * (1.0 - tau) ** 2


def _simulate_wheel(rng: np.random.Generator, task: _Task, n_steps: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Wheel velocity on a 1 kHz grid and its encoder recording.

    The choice movement turns the wheel by 0.3-0.6 rad between movement onset and response
    (position increases for choice -1, i.e. counter-clockwise); small jitters of a few
    hundredths of a radian happen between feedback and the next quiescent period.

    Returns
    -------
    velocity : (n_steps * 5,) float64, rad/s on the 1 kHz grid
    wheel : ALF wheel object: timestamps (M,) s of encoder events, position (M,) rad
    """
    fs = WHEEL_FS
    velocity = np.zeros(n_steps * int(round(fs * DT)))
    moved = ~np.isnan(task.movement_on)
    choice = task.trials["choice"][moved]
    amp = -choice * rng.uniform(0.3, 0.6, moved.sum())
    _add_bumps(velocity, fs, task.movement_on[moved], (task.movement_end - task.movement_on)[moved], amp)
    # corrective overshoot after some responses
    back = rng.random(moved.sum()) < 0.3
    _add_bumps(
        velocity,
        fs,
        task.movement_end[moved][back] + 0.05,
        rng.uniform(0.1, 0.3, back.sum()),
        -0.2 * amp[back],
    )
    # jitters between feedback and the next quiescent period
    next_quiet = np.r_[task.quiescent_start[1:], task.duration_s]
    for fb, quiet in zip(task.feedback, next_quiet):
        n = rng.poisson(0.4 * max(quiet - fb - 0.3, 0.0))
        if n:
            dur = rng.uniform(0.1, 0.3, n)
            onsets = rng.uniform(fb, quiet - dur)
            _add_bumps(velocity, fs, onsets, dur, rng.normal(0.0, 0.05, n))
    position = np.cumsum(velocity) / fs
    ticks = np.round(position / WHEEL_RESOLUTION_RAD)
    events = np.r_[0, np.flatnonzero(np.diff(ticks)) + 1]
    wheel = {
        "timestamps": (events + 1) / fs,  # the encoder reports the sample at the end of the step
        "position": ticks[events] * WHEEL_RESOLUTION_RAD,
    }
    return velocity, wheel


def _ar1(rng: np.random.Generator, n: int, tau_steps: float) -> np.ndarray:
    """Stationary unit-variance AR(1) / discretised OU process (n,), time constant in steps."""
    rho = np.exp(-1.0 / tau_steps)
    x = rng.standard_normal(n)
    y, _ = signal.lfilter([np.sqrt(1 - rho**2)], [1.0, -rho], x, zi=[rho * rng.standard_normal()])
    return y


def _impulses(times: np.ndarray, amplitudes: np.ndarray, n_steps: int) -> np.ndarray:
    """Impulse train (n_steps,) on the 5 ms grid with the given amplitudes at the event times."""
    out = np.zeros(n_steps)
    keep = ~np.isnan(times)
    np.add.at(out, np.floor(times[keep] / DT).astype(np.int64), amplitudes[keep])
    return out


def _alpha(lags: np.ndarray, latency: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Alpha kernels (L, n) peaking at 1 at latency + tau; zero before the latency."""
    x = np.maximum(lags[:, None] - latency[None, :], 0.0) / tau[None, :]
    return x * np.exp(1.0 - x)


def _simulate_whisking(
    rng: np.random.Generator, task: _Task, speed: np.ndarray, n_steps: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Whisking on the 5 ms grid and the left-camera ROI motion energy at 60 Hz.

    whisking = softplus(-0.5 + AR(tau 3 s) + 1.2 * smoothed wheel speed + licking after reward);
    motion energy = scale * whisking + camera noise, on frames with 0.3 ms timing jitter.

    Returns
    -------
    whisk : (n_steps,) float64, z-scored whisking (the neural covariate)
    camera : ALF leftCamera object: times (F,) s, ROIMotionEnergy (F,)
    """
    smooth = signal.windows.gaussian(41, std=10)  # 50 ms sd on the 5 ms grid
    speed_s = np.convolve(speed, smooth / smooth.sum(), mode="same")
    rewarded = task.trials["feedbackType"] > 0
    lick = signal.oaconvolve(
        _impulses(task.feedback[rewarded], np.ones(rewarded.sum()), n_steps),
        _alpha(np.arange(0, 3.0, DT), np.array([0.1]), np.array([0.5]))[:, 0],
    )[:n_steps]
    drive = -0.5 + _ar1(rng, n_steps, 3.0 / DT) + 1.2 * speed_s + 1.0 * lick
    whisking = np.logaddexp(0.0, drive)
    t_grid = (np.arange(n_steps) + 0.5) * DT
    t0 = rng.uniform(0.2, 1.0)
    n_frames = int((n_steps * DT - t0 - 1.0) * CAMERA_FS)
    frame_times = t0 + np.arange(n_frames) / CAMERA_FS + rng.normal(0.0, 3e-4, n_frames)
    scale = rng.uniform(2.0, 5.0)
    me = scale * np.interp(frame_times, t_grid, whisking) + rng.normal(0.0, 0.1 * scale, n_frames)
    camera = {"times": frame_times, "ROIMotionEnergy": np.maximum(me, 0.0)}
    whisk = (whisking - whisking.mean()) / whisking.std()
    return whisk, camera


# --------------------------------------------------------------------------------------------
# probes and units
# --------------------------------------------------------------------------------------------


def _channel_positions() -> np.ndarray:
    """Neuropixels 1.0 site positions (384, 2) um: x in {43, 11, 59, 27}, y from 20 um in 20 um rows."""
    ch = np.arange(N_CHANNELS)
    x = np.array([43.0, 11.0, 59.0, 27.0])[ch % 4]
    y = 20.0 * (ch // 2 + 1)
    return np.c_[x, y]


def _simulate_channels(rng: np.random.Generator, probe_index: int) -> dict[str, np.ndarray]:
    """Channel locations of one probe through PO, LP, DG, CA1, VISa (tip upwards), then root
    and void above the brain; boundaries jittered per animal and probe."""
    local = _channel_positions()
    y = local[:, 1]
    ids = np.full(N_CHANNELS, _VOID_ID, dtype=np.int64)
    top = 0.0  # PO starts at the tip
    for region in _PROBE_ORDER:
        extent = _REGION_EXTENT_UM[region] * rng.uniform(0.75, 1.25)
        layers = _REGION_LAYERS[region]
        fractions = np.array([f for _, _, f in layers]) * rng.uniform(0.8, 1.2, len(layers))
        bounds = top + extent * np.r_[0.0, np.cumsum(fractions) / fractions.sum()]
        for (_, allen_id, _), lo, hi in zip(layers, bounds[:-1], bounds[1:]):
            ids[(y > lo) & (y <= hi)] = allen_id
        top = bounds[-1]
    root_top = top + rng.uniform(100.0, 300.0)
    ids[(y > top) & (y <= root_top)] = _ROOT_ID
    ids[y <= 0] = _VOID_ID
    # straight track, 15 deg from vertical in the ML plane, tip at about DV -4.3 mm (um, re bregma)
    tip = np.array([-2243.0 - 400.0 * probe_index, -2000.0 - 300.0 * probe_index, -4300.0]) + rng.normal(0, 50, 3)
    angle = np.deg2rad(15.0 + rng.normal(0, 2))
    direction = np.array([np.sin(angle), 0.0, np.cos(angle)])  # from tip towards the surface
    mlapdv = tip[None, :] + y[:, None] * direction[None, :]
    mlapdv[:, 0] += local[:, 0] - 35.0  # sites sit across the shank width
    return {
        "brainLocationIds_ccf_2017": ids,
        "mlapdv": mlapdv,
        "localCoordinates": local,
        "rawInd": np.arange(N_CHANNELS, dtype=np.int64),
    }


def _region_of_ids(ids: np.ndarray) -> np.ndarray:
    """Beryl acronym (or '') of each channel id, from the simulated layer ids."""
    return np.array([_REGION_OF_ID.get(int(i), "") for i in ids], dtype=object)


def _draw(rng: np.random.Generator, mean_sd: tuple[float, float], n: int) -> np.ndarray:
    return rng.normal(mean_sd[0], mean_sd[1], n)


def _draw_units(rng: np.random.Generator, regions: np.ndarray, gain: float) -> dict[str, np.ndarray]:
    """Per-unit parameters (U,) drawn from each unit's region template."""
    n = regions.size
    params: dict[str, np.ndarray] = {}
    names = (
        "base_rate_hz",
        "stim_latency_s",
        "stim_tau_s",
        "w_stim",
        "w_contra",
        "move_peak_s",
        "w_move",
        "w_choice",
        "fb_latency_s",
        "fb_tau_s",
        "w_feedback",
        "w_reward",
        "w_block",
        "w_speed",
        "w_whisk",
        "kappa_block",
        "a_move",
        "move_sd_pre_s",
        "move_sd_post_s",
        "latent_sd",
    )
    for name in names:
        params[name] = np.zeros(n)
    for region in SIM_REGIONS:
        sel = regions == region
        m = int(sel.sum())
        if m == 0:
            continue
        tpl = REGION_TEMPLATES[region]
        params["base_rate_hz"][sel] = gain * tpl.base_rate_hz * np.exp(tpl.base_rate_log_sd * rng.standard_normal(m))
        params["stim_latency_s"][sel] = tpl.stim_latency_s * np.exp(0.15 * rng.standard_normal(m))
        params["stim_tau_s"][sel] = tpl.stim_tau_s * np.exp(0.2 * rng.standard_normal(m))
        params["move_peak_s"][sel] = tpl.move_peak_s + rng.normal(0.0, 0.05, m)
        params["move_sd_pre_s"][sel] = tpl.move_sd_pre_s * np.exp(0.15 * rng.standard_normal(m))
        params["move_sd_post_s"][sel] = tpl.move_sd_post_s * np.exp(0.15 * rng.standard_normal(m))
        params["fb_latency_s"][sel] = tpl.fb_latency_s * np.exp(0.15 * rng.standard_normal(m))
        params["fb_tau_s"][sel] = tpl.fb_tau_s * np.exp(0.2 * rng.standard_normal(m))
        for name in (
            "w_stim",
            "w_contra",
            "w_move",
            "w_choice",
            "w_feedback",
            "w_reward",
            "w_block",
            "w_speed",
            "w_whisk",
        ):
            params[name][sel] = _draw(rng, getattr(tpl, name), m)
        params["kappa_block"][sel] = np.clip(_draw(rng, tpl.kappa_block, m), -0.6, 0.6)
        params["a_move"][sel] = np.clip(_draw(rng, tpl.a_move, m), 0.0, 0.7)
        params["latent_sd"][sel] = tpl.latent_sd
    return params


# --------------------------------------------------------------------------------------------
# design: event kernels on a smooth basis
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Basis:
    """Raised-cosine basis (L, B) on lags ``lags`` (s, multiples of DT starting at lag0 steps)."""

    lags: np.ndarray
    phi: np.ndarray

    @property
    def lag0(self) -> int:
        return int(round(self.lags[0] / DT))

    def project(self, kernels: np.ndarray) -> np.ndarray:
        """Least-squares basis weights (B, n) of kernels (L, n) sampled on ``lags``."""
        return np.linalg.lstsq(self.phi, kernels, rcond=None)[0]

    def convolve(self, impulses: np.ndarray) -> np.ndarray:
        """Features (S, B): the impulse train (S,) convolved with every basis function."""
        n = impulses.size
        full = signal.oaconvolve(impulses[:, None], self.phi, axes=0)
        start = -self.lag0  # output j sums impulses at j - lag
        out = np.zeros((n, self.phi.shape[1]), dtype=np.float32)
        if start >= 0:
            seg = full[start : start + n]
            out[: seg.shape[0]] = seg
        else:
            seg = full[: n + start]
            out[-start : -start + seg.shape[0]] = seg
        return out


def _cosine_basis(lag_start: float, lag_end: float, n: int, log_offset: float | None) -> _Basis:
    """Raised cosines covering [lag_start, lag_end]; log-spaced in time if ``log_offset`` is set."""
    lags = np.arange(int(round(lag_start / DT)), int(round(lag_end / DT)) + 1) * DT
    warp = (lambda t: np.log(np.maximum(t, 0.0) + log_offset)) if log_offset else (lambda t: t)
    w = warp(lags)
    centres = np.linspace(w[0], w[-1], n)
    width = 2.0 * (centres[1] - centres[0])
    x = np.clip((w[:, None] - centres[None, :]) * np.pi / width, -np.pi, np.pi)
    return _Basis(lags=lags, phi=0.5 * (1.0 + np.cos(x)))


# fine enough that projected kernels stay within ~0.08 of their alpha / Gaussian shapes
_STIM_BASIS = _cosine_basis(0.0, 0.8, 20, log_offset=0.02)
_MOVE_BASIS = _cosine_basis(-0.6, 0.9, 16, log_offset=None)
_FB_BASIS = _cosine_basis(0.0, 1.2, 14, log_offset=0.05)


def _taper(lags: np.ndarray) -> np.ndarray:
    """(L, 1) cosine taper over the last quarter of a lag range, so kernels end at zero."""
    x = np.clip((lags - lags[0]) / (lags[-1] - lags[0]), 0.0, 1.0)
    return np.where(x < 0.75, 1.0, 0.5 * (1 + np.cos(np.pi * (x - 0.75) / 0.25)))[:, None]


def _asym_gauss(lags: np.ndarray, peak: np.ndarray, sd_pre: np.ndarray, sd_post: np.ndarray) -> np.ndarray:
    d = lags[:, None] - peak[None, :]
    sd = np.where(d < 0, sd_pre[None, :], sd_post[None, :])
    return np.exp(-0.5 * (d / sd) ** 2)


def _contrast_response(c: np.ndarray) -> np.ndarray:
    """Naka-Rushton contrast response (n = 1.5, c50 = 0.15); NaN contrast -> 0."""
    c = np.nan_to_num(c)
    return c**1.5 / (c**1.5 + 0.15**1.5)


# --------------------------------------------------------------------------------------------
# session
# --------------------------------------------------------------------------------------------


@dataclass
class _Units:
    """Probes and the units placed on them; unit arrays (U,) run over probe00 then probe01."""

    channels: list[dict[str, np.ndarray]]  # per probe
    probe: np.ndarray  # 'probe00' / 'probe01'
    cluster_id: np.ndarray  # index within the probe
    channel: np.ndarray
    depth_um: np.ndarray
    allen_id: np.ndarray
    region: np.ndarray  # Beryl acronym
    amp_v: np.ndarray  # mean spike amplitude (V)
    params: dict[str, np.ndarray]  # drawn from the region templates


def _place_units(rng: np.random.Generator, units_per_probe: list[int], gain: float) -> _Units:
    """Channels of every probe; units on channels of the five target regions (weighted by the
    regions' unit densities, so region proportions follow each animal's probe boundaries)."""
    channels, probe, cluster, chan, depth = [], [], [], [], []
    for p, n_p in enumerate(units_per_probe):
        ch = _simulate_channels(rng, p)
        region_of_channel = _region_of_ids(ch["brainLocationIds_ccf_2017"])
        density = np.array([REGION_TEMPLATES[r].density if r else 0.0 for r in region_of_channel])
        c = rng.choice(N_CHANNELS, size=n_p, p=density / density.sum())
        channels.append(ch)
        probe += [f"probe{p:02d}"] * n_p
        cluster.append(np.arange(n_p))
        chan.append(c)
        depth.append(ch["localCoordinates"][c, 1] + rng.normal(0.0, 8.0, n_p))
    allen_id = np.concatenate([ch["brainLocationIds_ccf_2017"][c] for ch, c in zip(channels, chan)])
    region = _region_of_ids(allen_id).astype(str)
    params = _draw_units(rng, region, gain)
    amp = np.clip(np.exp(np.log(120e-6) + 0.4 * rng.standard_normal(allen_id.size)), 50e-6, 300e-6)
    return _Units(
        channels=channels,
        probe=np.array(probe),
        cluster_id=np.concatenate(cluster),
        channel=np.concatenate(chan),
        depth_um=np.concatenate(depth),
        allen_id=allen_id,
        region=region,
        amp_v=amp,
        params=params,
    )


@dataclass
class _Design:
    """Covariates on the 5 ms grid (S steps) and the unit weights on them (F features, U units)."""

    x_stim: np.ndarray  # (S, 2 * B_stim) float32: unsigned and contralateral contrast on the stimulus basis
    x_other: np.ndarray  # (S, F) float32: movement, choice, feedback, reward bases; block, speed, whisk,
    #                      fast latents, slow drift
    block: np.ndarray  # (S, 1) float32: -1 / 0 / +1 for probabilityLeft 0.2 / 0.5 / 0.8
    moving: np.ndarray  # (S, 1) float32: 0..1, tanh(wheel speed / 1 rad/s)
    w_stim: np.ndarray  # (2 * B_stim, U) float32
    w_other: np.ndarray  # (F, U) float32
    log_base: np.ndarray  # (U,) float32, log Hz (corrected for the mean of exp(latent drive))


def _design(task: _Task, speed: np.ndarray, whisk: np.ndarray, units: _Units, rng: np.random.Generator) -> _Design:
    """Event covariates convolved with smooth bases, continuous covariates, a 2-4 dimensional
    OU latent (100-500 ms) and a slow drift, and every unit's kernels projected on the bases."""
    n_steps, tr, prm = speed.size, task.trials, units.params
    n_latent = int(rng.integers(2, 5))
    latent_tau = rng.uniform(0.1, 0.5, n_latent)  # s
    latents = np.stack([_ar1(rng, n_steps, tau / DT) for tau in latent_tau], axis=1)  # (S, L)
    loadings = rng.standard_normal((n_latent, units.region.size)) * prm["latent_sd"] / np.sqrt(n_latent)
    # slow drift of excitability (tau 30-120 s), as in long recordings: confounds slow task variables
    drift = _ar1(rng, n_steps, rng.uniform(30.0, 120.0) / DT)[:, None]  # (S, 1)
    latents = np.concatenate([latents, drift], axis=1)
    loadings = np.concatenate([loadings, rng.normal(0.0, SLOW_DRIFT_SD, (1, units.region.size))])

    crf_left, crf_right = _contrast_response(tr["contrastLeft"]), _contrast_response(tr["contrastRight"])
    x_stim = np.concatenate(
        [
            _STIM_BASIS.convolve(_impulses(task.stim_on, crf_left + crf_right, n_steps)),
            _STIM_BASIS.convolve(_impulses(task.stim_on, crf_right - crf_left, n_steps)),  # + contralateral (right)
        ],
        axis=1,
    )
    moved = ~np.isnan(task.movement_on)
    step_of_trial = np.clip(np.searchsorted(tr["intervals"][:, 0], (np.arange(n_steps) + 0.5) * DT) - 1, 0, None)
    block = ((tr["probabilityLeft"] - 0.5) / 0.3)[step_of_trial]
    x_other = np.concatenate(
        [
            _MOVE_BASIS.convolve(_impulses(task.movement_on, moved.astype(float), n_steps)),
            _MOVE_BASIS.convolve(_impulses(task.movement_on, np.where(moved, tr["choice"], 0.0), n_steps)),
            _FB_BASIS.convolve(_impulses(task.feedback, np.ones(tr["choice"].size), n_steps)),
            _FB_BASIS.convolve(_impulses(task.feedback, tr["feedbackType"], n_steps)),
            np.c_[block, np.minimum(speed / 2.0, 2.0), whisk, latents].astype(np.float32),
        ],
        axis=1,
    )

    stim_k = _alpha(_STIM_BASIS.lags, prm["stim_latency_s"], prm["stim_tau_s"]) * _taper(_STIM_BASIS.lags)
    stim_w = _STIM_BASIS.project(stim_k)
    move_k = _asym_gauss(_MOVE_BASIS.lags, prm["move_peak_s"], prm["move_sd_pre_s"], prm["move_sd_post_s"])
    move_w = _MOVE_BASIS.project(move_k * _taper(_MOVE_BASIS.lags))
    fb_k = _alpha(_FB_BASIS.lags, prm["fb_latency_s"], prm["fb_tau_s"]) * _taper(_FB_BASIS.lags)
    fb_w = _FB_BASIS.project(fb_k)
    w_other = np.concatenate(
        [
            move_w * prm["w_move"],
            move_w * prm["w_choice"],
            fb_w * prm["w_feedback"],
            fb_w * prm["w_reward"],
            prm["w_block"][None, :],
            prm["w_speed"][None, :],
            prm["w_whisk"][None, :],
            loadings,
        ]
    )
    return _Design(
        x_stim=x_stim,
        x_other=x_other,
        block=block.astype(np.float32)[:, None],
        moving=np.tanh(speed / 1.0).astype(np.float32)[:, None],
        w_stim=np.concatenate([stim_w * prm["w_stim"], stim_w * prm["w_contra"]]).astype(np.float32),
        w_other=w_other.astype(np.float32),
        log_base=(np.log(prm["base_rate_hz"]) - 0.5 * (loadings**2).sum(axis=0)).astype(np.float32),
    )


def _spikes_and_expected_counts(
    design: _Design, params: dict[str, np.ndarray], edges: np.ndarray, rng: np.random.Generator, chunk: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rates in chunks of units; Poisson spikes and exact expected counts in the trial windows.

    Parameters
    ----------
    design : covariates and weights
    params : per-unit parameters (kappa_block, a_move)
    edges : (K, T + 1) absolute bin edges (s)
    rng : spike stream

    Returns
    -------
    expected : (K, T, U) float32, integral of the rate over each bin
    spike_times : (N,) float64 s, unsorted
    spike_units : (N,) int64 unit index
    """
    n_steps, n_units = design.x_stim.shape[0], design.w_stim.shape[1]
    edge_pos = edges.ravel() / DT
    edge_step = np.minimum(np.floor(edge_pos).astype(np.int64), n_steps - 1)
    edge_frac = edge_pos - edge_step
    expected = np.empty((edges.shape[0], edges.shape[1] - 1, n_units), dtype=np.float32)
    spike_times, spike_units = [], []
    for u0 in range(0, n_units, chunk):
        sl = slice(u0, min(u0 + chunk, n_units))
        gain = (1.0 + design.block * params["kappa_block"][sl].astype(np.float32)) * (
            1.0 - design.moving * params["a_move"][sl].astype(np.float32)
        )  # (S, u): stimulus gain x block prior, suppressed during movement
        stim = design.x_stim @ design.w_stim[:, sl]  # (S, u)
        log_rate = design.log_base[sl] + gain * stim + design.x_other @ design.w_other[:, sl]
        rate = np.exp(np.minimum(log_rate, np.float32(np.log(MAX_RATE_HZ))))  # (S, u) Hz, constant within a step
        # exact integral of the piecewise-constant rate: cumulative sum, linear within a step
        cum = np.zeros((n_steps + 1, rate.shape[1]))
        np.cumsum(rate * DT, axis=0, dtype=np.float64, out=cum[1:])
        at_edges = cum[edge_step] + edge_frac[:, None] * (rate[edge_step] * DT)
        expected[:, :, sl] = np.diff(at_edges.reshape(edges.shape[0], edges.shape[1], -1), axis=1)
        # Poisson process: counts per step, times uniform within the step
        counts = rng.poisson(rate * DT)
        step, unit = np.nonzero(counts)
        n_spk = counts[step, unit]
        step, unit = np.repeat(step, n_spk), np.repeat(unit, n_spk) + u0
        spike_times.append((step + rng.random(step.size)) * DT)
        spike_units.append(unit)
    return expected, np.concatenate(spike_times), np.concatenate(spike_units)


def _probe_objects(
    units: _Units, unit_uuid: np.ndarray, spike_times: np.ndarray, spike_units: np.ndarray, rng: np.random.Generator
) -> list[ProbeData]:
    """ALF spikes/clusters/channels objects of every probe, spikes sorted in time."""
    probes = []
    for p, channels in enumerate(units.channels):
        name = f"probe{p:02d}"
        in_probe = units.probe[spike_units] == name
        order = np.argsort(spike_times[in_probe], kind="stable")
        t, u = spike_times[in_probe][order], spike_units[in_probe][order]
        sel = units.probe == name
        probes.append(
            ProbeData(
                name=name,
                channels=channels,
                clusters={
                    "channels": units.channel[sel].astype(np.int64),
                    "depths": units.depth_um[sel],
                    "uuids": unit_uuid[sel],
                },
                spikes={
                    "times": t,
                    "clusters": units.cluster_id[u].astype(np.uint32),
                    "amps": units.amp_v[u] * np.exp(0.1 * rng.standard_normal(t.size)),
                    "depths": (units.depth_um[u] + rng.normal(0.0, 4.0, t.size)).astype(np.float32),
                },
            )
        )
    return probes


def simulate_session(config: SimulationConfig, index: int, eid: str | None = None) -> SimulatedSession:
    """Simulate session ``index`` of ``config`` (one animal): task, behaviour, probes, spikes.

    Parameters
    ----------
    config : what to simulate
    index : session index, 0..config.n_sessions-1
    eid : session id; defaults to ``session_eids(config.seed, index + 1)[index]``

    Returns
    -------
    SimulatedSession with spikes on every probe and the (K, T, U) expected counts.
    """
    if not 0 <= index < config.n_sessions:
        raise ValueError(f"session index {index} is outside 0..{config.n_sessions - 1}")
    seed = config.seed
    eid = eid or session_eids(seed, index + 1)[index]

    meta_rng = _rng(seed, index, _STREAM_META)
    n_trials = int(meta_rng.integers(config.n_trials[0], config.n_trials[1] + 1))
    n_units = int(meta_rng.integers(config.n_units[0], config.n_units[1] + 1))
    n_probes = int(meta_rng.integers(config.n_probes[0], config.n_probes[1] + 1))
    date = _BASE_DATE + _dt.timedelta(days=int(meta_rng.integers(0, 900)))
    gain = float(np.exp(0.2 * meta_rng.standard_normal()))  # per-animal excitability
    n_first = int(round(n_units * meta_rng.uniform(0.4, 0.6))) if n_probes == 2 else n_units
    units_per_probe = [n_first, n_units - n_first][:n_probes]

    task = _simulate_task(_rng(seed, index, _STREAM_TASK), n_trials)
    n_steps = int(np.ceil(task.duration_s / DT))
    duration = n_steps * DT

    beh_rng = _rng(seed, index, _STREAM_BEHAVIOUR)
    velocity_1k, wheel = _simulate_wheel(beh_rng, task, n_steps)
    speed = np.abs(velocity_1k).reshape(n_steps, -1).mean(axis=1)  # (S,) rad/s
    whisk, camera = _simulate_whisking(beh_rng, task, speed, n_steps)

    units = _place_units(_rng(seed, index, _STREAM_PROBES), units_per_probe, gain)
    design = _design(task, speed, whisk, units, _rng(seed, index, _STREAM_LATENT))

    # trial windows around the recorded stimOn; trials with a NaN stimOn are computed at the true
    # onset and blanked afterwards
    rel_edges = window_edges(config.window_s, config.bin_size_s)
    rec_stim = task.trials["stimOn_times"]
    edges = np.where(np.isnan(rec_stim), task.stim_on, rec_stim)[:, None] + rel_edges[None, :]  # (K, T + 1)
    if np.any(edges < 0) or np.any(edges > duration):
        raise ValueError(f"window_s={config.window_s} reaches outside the session; use a shorter window")
    spike_rng = _rng(seed, index, _STREAM_SPIKES)
    expected, spike_times, spike_units = _spikes_and_expected_counts(design, units.params, edges, spike_rng)
    expected[np.isnan(rec_stim)] = np.nan

    unit_uuid = np.array(
        [str(uuid.uuid3(uuid.UUID(eid), f"{p}/cluster={c}")) for p, c in zip(units.probe, units.cluster_id)]
    )
    probes = _probe_objects(units, unit_uuid, spike_times, spike_units, spike_rng)
    unit_table = {
        "probe": units.probe,
        "cluster_id": units.cluster_id,
        "region": units.region,
        "allen_id": units.allen_id,
        "allen_acronym": np.array([_ACRONYM_OF_ID[int(i)] for i in units.allen_id]),
        "channel": units.channel,
        "depth_um": units.depth_um,
        "uuid": unit_uuid,
        **{k: v for k, v in units.params.items() if k != "latent_sd"},
    }
    return SimulatedSession(
        eid=eid,
        index=index,
        role=session_role(config, index),
        lab=LABS[index % len(LABS)],
        subject=f"SIM-{index:03d}",
        date=date,
        number=1,
        trials=task.trials,
        wheel=wheel,
        camera=camera,
        probes=probes,
        expected_counts=expected,
        bin_centres_s=0.5 * (rel_edges[:-1] + rel_edges[1:]),
        units=unit_table,
        missing_datasets=tuple(config.missing_datasets.get(index, ())),
        duration_s=duration,
    )
