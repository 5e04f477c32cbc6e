"""Writing files atomically: every output of the workflow appears whole or not at all.

A writer that is interrupted (a killed job, a full disk, an exception) leaves the previous file,
or none, never a truncated one that a later step would read as complete. :func:`atomic_write`
writes to a temporary sibling (``.<name>.<random>.tmp``, in the same folder, so on the same file
system) and renames it into place with :func:`os.replace`; every file writer of the package goes
through it. Nothing here imports more than the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "write_json"]


def atomic_write(path: str | Path, content: str | bytes | Callable[[Path], object], encoding: str = "utf-8") -> Path:
    """Write ``path`` atomically, creating its parent folders.

    Parameters
    ----------
    path : the file (or folder) to write
    content : text (encoded with ``encoding``), bytes, or a function that writes the output to the
        temporary path it is given (a file, or a folder such as a Zarr store), for writers that
        take a path (``savefig``, ``to_csv``, ``to_zarr``)
    encoding : the encoding of text content

    Returns
    -------
    pathlib.Path
        ``path``

    Notes
    -----
    A folder already at ``path`` is removed just before the rename (a folder cannot be replaced in
    one step); a file is replaced in one step. The temporary output is removed if writing fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if isinstance(content, str):
            tmp.write_bytes(content.encode(encoding))
        elif isinstance(content, (bytes, bytearray, memoryview)):
            tmp.write_bytes(content)
        else:
            content(tmp)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()
    return path


def write_json(obj, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (2 spaces, a final newline; values JSON cannot hold, such as
    paths, written as their ``str``), atomically."""
    return atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")
