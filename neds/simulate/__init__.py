"""Simulated IBL repeated-site sessions with known ground truth (the workflow's default data).

:mod:`neds.simulate.generative` is the pure generative model (task, behaviour, probes, units);
:mod:`neds.simulate.alf` writes the sessions as ALF data with a ONE cache, so that the real IBL
loaders read them unchanged, and the exact expected spike counts beside them.
"""

from neds.simulate.alf import (
    build_one_cache,
    ground_truth_dataset,
    simulate_sessions,
    write_ground_truth,
    write_session,
)
from neds.simulate.generative import (
    REGION_TEMPLATES,
    SIM_REGIONS,
    RegionTemplate,
    SimulatedSession,
    SimulationConfig,
    session_eids,
    simulate_session,
)

__all__ = [
    "SIM_REGIONS",
    "REGION_TEMPLATES",
    "RegionTemplate",
    "SimulationConfig",
    "SimulatedSession",
    "session_eids",
    "simulate_session",
    "simulate_sessions",
    "write_session",
    "write_ground_truth",
    "ground_truth_dataset",
    "build_one_cache",
]
