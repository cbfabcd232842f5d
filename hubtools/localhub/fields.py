"""Typed fields of JSON request bodies, checked where the request comes in.

Endpoints read ``body["paths"]`` through :func:`get` rather than trusting the JSON, so
``{"paths": 5}`` is a 400 "paths-info: 'paths' must be a list of strings, not an integer"
instead of a TypeError deep inside (a 500). JSON that is invalid or nested too deeply for
the parser is a 400 as well.
"""

from __future__ import annotations

import json
from typing import Any

from hubtools.errors import HubRequestError

KINDS = {str: "a string", bool: "true or false", int: "an integer", list: "a list", dict: "a JSON object"}


def parse_json(data: bytes, what: str) -> Any:
    """``data`` decoded as JSON; a 400 naming ``what`` if it is not JSON."""
    try:
        return json.loads(data)
    except RecursionError:
        raise HubRequestError(f"{what} is nested too deeply to parse.") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise HubRequestError(f"{what} is not valid JSON: {exc}.") from None


def describe(value: Any) -> str:
    """The JSON type of ``value``, for messages: ``"an integer"``, ``"null"``..."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return "a number"
    return next((name for kind, name in KINDS.items() if is_kind(value, kind)), type(value).__name__)


def is_kind(value: Any, kind: type) -> bool:
    """``isinstance``, except that ``true`` is not an integer."""
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def get(obj: dict[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    """``obj[key]`` if it is of ``kind``; ``default`` if missing or null; a 400 naming the field otherwise."""
    value = obj.get(key)
    if value is None:
        return default
    if not is_kind(value, kind):
        raise HubRequestError(f"{where}: {key!r} must be {KINDS[kind]}, not {describe(value)}.")
    return value


def require(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """Like :func:`get`, but a missing or null field is a 400 too."""
    value = get(obj, key, kind, where)
    if value is None:
        raise HubRequestError(f"{where}: {key!r} is missing; it must be {KINDS[kind]}.")
    return value


def size(obj: dict[str, Any], key: str, where: str, default: int | None = None) -> int | None:
    """A non-negative integer field (a byte count)."""
    value = get(obj, key, int, where, default)
    if value is not None and value < 0:
        raise HubRequestError(f"{where}: {key!r} must not be negative, got {value}.")
    return value


def list_of(value: Any, kind: type, what: str) -> list[Any]:
    """``value`` if it is a list of ``kind`` (str or dict); a 400 naming ``what`` otherwise."""
    expected = f"a list of {'strings' if kind is str else 'JSON objects'}"
    if not isinstance(value, list):
        raise HubRequestError(f"{what} must be {expected}, not {describe(value)}.")
    for item in value:
        if not is_kind(item, kind):
            raise HubRequestError(f"{what} must be {expected}; it holds {describe(item)}.")
    return value
