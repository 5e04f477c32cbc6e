"""Evaluation: metrics (``neds.evaluate.metrics``)."""
