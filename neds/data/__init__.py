"""Data preparation: trial exclusion, binning, splits (``neds.data``)."""
