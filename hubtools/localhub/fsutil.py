"""Atomic file writes: write to a temporary file, then ``os.replace`` it into place.

A writer holds an ``flock`` on its temporary file until the file is moved or removed, so
:func:`remove_orphans` can tell a write under way (in this process or another, such as a
``hub seed`` beside the server) from one whose process died: only the dead one's file can
be locked, and only that one is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_writer(target: Path, tmp_dir: Path | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``target`` only if the block finishes without error.

    ``tmp_dir`` must be on the same filesystem as ``target`` (default: its folder).
    """
    tmp_dir = Path(tmp_dir or target.parent)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _locked_temp_file(tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.replace(tmp_name, target)  # before the close that releases the lock
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _locked_temp_file(tmp_dir: Path) -> tuple[int, str]:
    while True:
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=TMP_PREFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return fd, name
        os.close(fd)  # remove_orphans took it between mkstemp and flock: make another


def remove_orphans(root: Path) -> int:
    """Delete the temporary files under ``root`` that no live writer holds; how many."""
    removed = 0
    for path in Path(root).rglob(f"{TMP_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile, or not a file we can open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
            removed += 1
        except OSError:
            pass  # locked: a write is under way
        finally:
            os.close(fd)
    return removed


def write_json(target: Path, data: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(target) as out:
        out.write(json.dumps(data, indent=1, sort_keys=True).encode())


def read_json(source: Path) -> Any:
    return json.loads(source.read_text(encoding="utf-8"))
