"""Logging of the workflow's jobs: where a process's log records and standard error go."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["log_to_file"]


def log_to_file(path: str | Path | None, level: int = logging.INFO) -> None:
    """Send this process's log records (neds, ONE, ibllib) and its standard error (warnings,
    progress bars) to ``path``, a rule's log file; None logs to the terminal.

    Parameters
    ----------
    path : the log file (created with its folders, truncated), or None
    level : the lowest level of the records kept
    """
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(path, "w", buffering=1)
        handlers = [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
