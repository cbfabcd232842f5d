"""Request bodies: ``Content-Length`` or ``Transfer-Encoding: chunked``, framed strictly.

Strict, because each lenient reading was a way to crash or hang the server: ``int()``
takes ``-5``, ``0x5``, ``5_0`` and ``" 5"``, ``'²'.isdigit()`` is True while ``int('²')``
fails, and a negative chunk size made the reader wait for the end of the stream. Lengths
are ASCII digits (hex digits for chunk sizes) of bounded length, every chunk ends in CRLF,
and a body both chunked and with a ``Content-Length`` is refused. Reads are bounded by the
socket's read timeout; a body that stops arriving is a 408, one that ends early a 400.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import BinaryIO, NoReturn

from hubtools.errors import HubRequestError, PayloadTooLargeError, RequestTimeoutError

MAX_IN_MEMORY = 256 * 1024 * 1024  # a body read whole (JSON, commit payload); uploads stream
READ_CHUNK = 1024 * 1024
MAX_LINE = 4096  # a chunk-size or trailer line
MAX_TRAILERS = 32
_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})(;[^\r\n]*)?\r\n")


def body_length(headers: Message) -> int | None:
    """The body's length from the headers; None for a chunked body; a 4xx if it is ambiguous."""
    encodings = headers.get_all("Transfer-Encoding") or []
    lengths = [value.strip() for value in headers.get_all("Content-Length") or []]
    if encodings:
        if [e.strip().lower() for e in encodings] != ["chunked"]:
            raise HubRequestError(
                f"Transfer-Encoding {', '.join(encodings)!r} is not supported; send Content-Length or 'chunked'."
            )
        if lengths:
            raise HubRequestError("The request has both Content-Length and Transfer-Encoding; send one of them.")
        return None
    if not lengths:
        return 0
    if len(set(lengths)) > 1:
        raise HubRequestError(f"Conflicting Content-Length headers {lengths!r}; send one.")
    if _LENGTH.fullmatch(lengths[0]):
        return int(lengths[0])
    if lengths[0].isascii() and lengths[0].isdigit():
        raise PayloadTooLargeError(f"Content-Length {lengths[0][:40]}... is too large.")
    raise HubRequestError(f"Invalid Content-Length {lengths[0][:40]!r}: send the body's size in ASCII digits.")


class BodyReader:
    """The request body as a stream; ``read(n)`` gives up to ``n`` bytes, ``b""`` at the end."""

    def __init__(self, stream: BinaryIO, headers: Message):
        self._stream = stream
        self.length = body_length(headers)
        self.chunked = self.length is None
        self._left = self.length or 0  # bytes left in the body, or in the current chunk
        self._done = not self.chunked and self._left == 0
        self._started = False  # a chunk was read: the next size line follows its CRLF
        self._broken = False  # a read failed: the framing is lost, the connection must close

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while (size < 0 or len(out) < size) and not self._done:
            if self.chunked and self._left == 0:
                self._next_chunk()
                continue
            want = min(self._left, READ_CHUNK if size < 0 else size - len(out), READ_CHUNK)
            data = self._io(self._stream.read, want)
            if not data:
                self._fail(HubRequestError("The request body ended early."))
            out += data
            self._left -= len(data)
            if not self.chunked and self._left == 0:
                self._done = True
        return bytes(out)

    def read_all(self, limit: int = MAX_IN_MEMORY) -> bytes:
        """The whole body, if it is at most ``limit`` bytes; a 413 otherwise."""
        if self.length is not None and self.length > limit:
            raise PayloadTooLargeError(
                f"The request body is {self.length} bytes; this endpoint takes {limit} at most."
            )
        data = self.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLargeError(f"The request body is over {limit} bytes, the most this endpoint takes.")
        return data

    def drain(self, limit: int) -> bool:
        """Read and drop what is left of the body, up to ``limit`` bytes; True if all of it."""
        try:
            while not self._done and not self._broken and limit > 0:
                limit -= len(self.read(min(limit, READ_CHUNK)))
        except HubRequestError:
            return False
        return self._done

    def _next_chunk(self) -> None:
        if self._started and self._line() != b"\r\n":
            self._fail(HubRequestError("Chunk data is longer than its size line says (no CRLF after it)."))
        self._started = True
        line = self._line()
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            self._fail(HubRequestError(f"Invalid chunk size line {line[:40]!r}: send hex digits, then CRLF."))
        self._left = int(match[1], 16)
        if self._left == 0:
            for _ in range(MAX_TRAILERS):
                if self._line() == b"\r\n":
                    self._done = True
                    return
            self._fail(HubRequestError(f"More than {MAX_TRAILERS} trailer lines after a chunked body."))

    def _line(self) -> bytes:
        line = self._io(self._stream.readline, MAX_LINE + 1)
        if not line.endswith(b"\n"):
            self._fail(HubRequestError("The chunked body ended early, or has a line over 4 KiB."))
        return line

    def _io(self, read, size: int) -> bytes:
        """``read(size)``, with socket errors turned into request errors."""
        try:
            return read(size)
        except TimeoutError:
            self._fail(RequestTimeoutError("The request body stopped arriving; send all of it without pausing."))
        except OSError:
            self._fail(HubRequestError("The connection broke while the request body was being read."))

    def _fail(self, error: HubRequestError) -> NoReturn:
        self._broken = True
        raise error
