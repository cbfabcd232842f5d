"""HTTP ``Range: bytes=...`` for one range (what huggingface_hub and fsspec send)."""

from __future__ import annotations

import re

from hubtools.errors import HubRequestError, RangeNotSatisfiableError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int, str | None]:
    """``(start, length, Content-Range)`` for ``header``; the whole file when there is none."""
    if not header:
        return 0, size, None
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        raise HubRequestError(f"Unsupported Range header {header!r}: send one 'bytes=start-end' range.")
    first, last = match.groups()
    if first == "":  # suffix: the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiableError(
            f"Range {header!r} is outside the file ({size} bytes).", {"Content-Range": f"bytes */{size}"}
        )
    return start, end - start + 1, f"bytes {start}-{end}/{size}"
