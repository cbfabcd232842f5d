"""HTTP ``Range: bytes=...`` for one range (what huggingface_hub and fsspec send).

Positions are ASCII digits only (``\\d`` would take other scripts' digits). A position too
long to be any file's offset (a 5,000-digit one, say) reads as "past the end" instead of
being handed to ``int()``, which refuses numbers over 4,300 digits.
"""

from __future__ import annotations

import re

from hubtools.errors import HubRequestError, RangeNotSatisfiableError

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
MAX_DIGITS = 18
PAST_ANY_FILE = 10**MAX_DIGITS


def parse_range(header: str | None, size: int) -> tuple[int, int, str | None]:
    """``(start, length, Content-Range)`` for ``header``; the whole file when there is none."""
    if not header:
        return 0, size, None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        raise HubRequestError(f"Unsupported Range header {header[:100]!r}: send one 'bytes=start-end' range.")
    first, last = match.groups()
    if first == "":  # suffix: the last N bytes
        start, end = max(size - _position(last), 0), size - 1
    else:
        start, end = _position(first), min(_position(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiableError(
            f"Range {header[:100]!r} is outside the file ({size} bytes).", {"Content-Range": f"bytes */{size}"}
        )
    return start, end - start + 1, f"bytes {start}-{end}/{size}"


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_DIGITS else PAST_ANY_FILE
