"""The NEDS model (``neds.model.neds``) and its multi-task masking (``neds.model.masking``)."""

from neds.model.masking import BEHAVIOURS, SCHEMES, Masks, draw_masks, eval_masks, scheme_masks
from neds.model.neds import MODES, NEDS, Batch, ModelConfig, Output, model_summary

__all__ = [
    "BEHAVIOURS",
    "SCHEMES",
    "MODES",
    "Masks",
    "draw_masks",
    "eval_masks",
    "scheme_masks",
    "Batch",
    "ModelConfig",
    "NEDS",
    "Output",
    "model_summary",
]
