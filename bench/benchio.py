"""What the bench scripts share: printing a result and writing it as JSON."""

from __future__ import annotations

import json
from pathlib import Path


def emit_json(res: dict, out: str | Path | None) -> None:
    """Print ``res`` as JSON and, if ``out`` is given, write it there (parent folders created)."""
    text = json.dumps(res, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
