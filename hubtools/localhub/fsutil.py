"""Atomic file writes: write to a temporary file, then ``os.replace`` it into place."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


@contextmanager
def atomic_writer(target: Path, tmp_dir: Path | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``target`` only if the block finishes without error.

    ``tmp_dir`` must be on the same filesystem as ``target`` (default: its folder).
    """
    tmp_dir = Path(tmp_dir or target.parent)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(tmp_name, target)
    except BaseException:
        os.unlink(tmp_name)
        raise


def write_json(target: Path, data: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(target) as out:
        out.write(json.dumps(data, indent=1, sort_keys=True).encode())


def read_json(source: Path) -> Any:
    return json.loads(source.read_text(encoding="utf-8"))
