"""NEDS: Neural Encoding and Decoding at Scale, as an installable package behind a Snakemake workflow."""

__version__ = "0.1.0"
