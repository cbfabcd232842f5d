"""Request and reply objects between the HTTP plumbing (handler.py) and the endpoints.

Kept free of ``http.server`` so endpoints can be read (and tested) as plain functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from hubtools.errors import HubRequestError
from hubtools.localhub.bodies import BodyReader
from hubtools.localhub.fields import parse_json
from hubtools.localhub.routes import Route

TRUE_VALUES = ("1", "true", "True", "yes")


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

    @property
    def is_json(self) -> bool:
        return "json" in self.headers.get("Content-Type", "")

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (``{}`` when empty)."""
        data = parse_json(self.body.read_all() or b"{}", "The request body")
        if not isinstance(data, dict):
            raise HubRequestError("The request body must be a JSON object.")
        return data

    def form(self) -> dict[str, list[str]]:
        """The body's form fields, each a list of values (``paths=a&paths=b``)."""
        return parse_qs(self.body.read_all().decode(errors="replace"), keep_blank_values=True)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: tuple[Path, int, int] | None = None  # (path, offset, length) streamed instead of body

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode())

    @classmethod
    def html(cls, text: str) -> Reply:
        """A page; a lone surrogate from repo data (a file name, a commit title) shows as ``\\udcff``."""
        return cls(200, {"Content-Type": "text/html; charset=utf-8"}, text.encode("utf-8", "backslashreplace"))

    @classmethod
    def error(cls, exc: HubRequestError, status: int | None = None) -> Reply:
        headers = {"X-Error-Code": exc.code, "X-Error-Message": _header_safe(exc.message), **exc.headers}
        return cls.json({"error": exc.message}, status or exc.status, headers)

    @property
    def length(self) -> int:
        return self.file[2] if self.file else len(self.body)


def _header_safe(text: str, limit: int = 1000) -> str:
    """``text`` fit for a header: latin-1, one line, short enough for any client's line limit."""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")
