"""Request and reply objects between the HTTP plumbing (server.py) and the endpoints.

Kept free of ``http.server`` so endpoints can be read (and tested) as plain functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs

from hubtools.errors import HubRequestError
from hubtools.localhub.routes import Route

TRUE_VALUES = ("1", "true", "True", "yes")


class BodyReader:
    """The request body, from ``Content-Length`` or ``Transfer-Encoding: chunked``."""

    def __init__(self, stream: BinaryIO, headers: Message):
        self._stream = stream
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        length = headers.get("Content-Length") or "0"
        if not self.chunked and not length.isdigit():
            raise HubRequestError(f"Invalid Content-Length {length!r}.")
        self.length = None if self.chunked else int(length)
        self._left = 0 if self.chunked else self.length  # bytes left in the body / current chunk
        self._done = not self.chunked and self._left == 0
        self._started = False

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while (size < 0 or len(out) < size) and not self._done:
            if self.chunked and self._left == 0:
                self._next_chunk()
                continue
            want = self._left if size < 0 else min(self._left, size - len(out))
            data = self._stream.read(want)
            if not data:
                raise HubRequestError("Request body ended early.")
            out += data
            self._left -= len(data)
            if not self.chunked and self._left == 0:
                self._done = True
        return bytes(out)

    def _next_chunk(self) -> None:
        if self._started:
            self._stream.readline()  # the CRLF that ends the previous chunk's data
        self._started = True
        line = self._stream.readline().split(b";")[0].strip()
        try:
            self._left = int(line, 16)
        except ValueError:
            raise HubRequestError(f"Invalid chunk size {line[:20]!r} in a chunked body.") from None
        if self._left == 0:
            while self._stream.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            self._done = True

    def drain(self, limit: int) -> bool:
        """Read and drop what is left of the body, up to ``limit`` bytes; True if all of it."""
        try:
            while not self._done and limit > 0:
                limit -= len(self.read(min(limit, 1 << 20)))
        except (HubRequestError, OSError):
            return False
        return self._done


@dataclass
class Request:
    method: str
    route: Route
    query: dict[str, list[str]]
    headers: Message
    body: BodyReader
    base_url: str  # http://host:port as the client addressed us
    authorized: bool  # carries the accepted token

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        return self.arg(name, "") in TRUE_VALUES

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (``{}`` when empty)."""
        try:
            data = json.loads(self.body.read() or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise HubRequestError(f"Request body is not valid JSON: {exc}.") from None
        if not isinstance(data, dict):
            raise HubRequestError("Request body must be a JSON object.")
        return data

    def form_or_json(self) -> dict[str, Any]:
        """Body as a dict: JSON objects as-is, form fields as lists (``paths=a&paths=b``)."""
        if "json" in self.headers.get("Content-Type", ""):
            return self.json()
        return parse_qs(self.body.read().decode(errors="replace"), keep_blank_values=True)


def json_objects(value: Any, what: str) -> list[dict[str, Any]]:
    """``value`` if it is a list of JSON objects; a 400 naming ``what`` otherwise."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise HubRequestError(f"{what} must be a list of JSON objects.")
    return value


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: tuple[Path, int, int] | None = None  # (path, offset, length) streamed instead of body

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> "Reply":
        return cls(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode())

    @classmethod
    def html(cls, text: str) -> "Reply":
        return cls(200, {"Content-Type": "text/html; charset=utf-8"}, text.encode())

    @classmethod
    def error(cls, exc: HubRequestError, status: int | None = None) -> "Reply":
        headers = {"X-Error-Code": exc.code, "X-Error-Message": _header_safe(exc.message), **exc.headers}
        return cls.json({"error": exc.message}, status or exc.status, headers)

    @property
    def length(self) -> int:
        return self.file[2] if self.file else len(self.body)


def _header_safe(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")
