"""Evaluation: metrics, the per-session evaluation of every method, the linear and reduced-rank
baselines, brain-region probing and the result tables."""
