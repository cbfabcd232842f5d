"""What a connection's ``rfile`` and ``wfile`` stand on: bounds on the request head, and
replies that stop at the first failed write.

The socket timeout bounds each read, not a request: a client that sends a byte of its
headers every few seconds would hold its connection (and thread) for ever, and a few
hundred such clients leave none for anyone else. So :class:`HeadReader` gives the request
line and headers ``head_timeout`` seconds in all, counted from their first byte (a kept-alive
connection still waits ``read_timeout`` for its next request), and :class:`HeaderLines` gives
the header lines :data:`MAX_HEADER_BYTES` in all (http.server alone takes 100 lines of 64 KiB).

A client that goes away mid-reply breaks the write; the buffered writer over the socket
would try the same bytes again at every flush and at close, each time with a traceback in
the log. :class:`ReplyWriter` drops what is written after the first failure instead.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from typing import BinaryIO

MAX_HEADER_BYTES = 64 * 1024


class HeadReader(io.RawIOBase):
    """The socket's raw reads; between :meth:`start` and :meth:`end`, each waits only until the
    head's deadline, ``head_timeout`` seconds after the first byte read."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, read_timeout: float, head_timeout: float):
        super().__init__()
        self._raw, self._sock = raw, sock
        self._read_timeout, self._head_timeout = read_timeout, head_timeout
        self._in_head = False
        self._deadline: float | None = None

    def readable(self) -> bool:
        return True

    def start(self) -> None:
        """A request head is next: its deadline starts with its first byte."""
        self._in_head, self._deadline = True, None

    def end(self) -> None:
        """The head is read (or refused): reads wait ``read_timeout`` each again."""
        self._in_head, self._deadline = False, None
        self._sock.settimeout(self._read_timeout)

    def readinto(self, buffer) -> int:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the request head took over {self._head_timeout} s")
            self._sock.settimeout(min(self._read_timeout, left))
        count = self._raw.readinto(buffer)
        if self._in_head and self._deadline is None and count:
            self._deadline = time.monotonic() + self._head_timeout
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class HeaderLines:
    """What http.client reads the header lines through: ``readline`` of ``rfile``, at most
    ``limit`` bytes in all; past it, the ``HTTPException`` http.server answers with a 431."""

    def __init__(self, rfile: BinaryIO, limit: int = MAX_HEADER_BYTES):
        self._rfile, self._limit, self._left = rfile, limit, limit

    def readline(self, size: int = -1) -> bytes:
        line = self._rfile.readline(self._left + 1 if size < 0 else min(size, self._left + 1))
        self._left -= len(line)
        if self._left < 0:
            raise http.client.HTTPException(f"the header lines are over {self._limit} bytes in all")
        return line


class ReplyWriter(io.RawIOBase):
    """The socket's raw writes, until one fails: the client is gone, later writes are dropped."""

    def __init__(self, raw: io.RawIOBase):
        super().__init__()
        self._raw = raw
        self.broken = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int | None:
        if self.broken:
            return len(data)
        try:
            return self._raw.write(data)
        except (ConnectionError, TimeoutError):
            self.broken = True
            raise

    def close(self) -> None:
        self._raw.close()
        super().close()
