"""Malformed requests against the local Hub: each one gets a 4xx JSON error with the Hub's
``X-Error-Code`` within seconds (never a 500, a hang, an HTML page or a dropped connection),
and the server goes on serving. Also: idle connections are closed after the read timeout, a
trickled request head at the head timeout, connections over the bound get a 503,
``parentCommit`` must name the head, uploads leave no temp files, a client gone mid-upload
costs one log line, and small replies over a kept-alive connection take no 40 ms Nagle stall.
Hypothesis fuzzes README front matter (dates, tags, aliases, nested types: the repo info is a
200 with JSON-safe card data) and file names (any unicode, surrogates, controls, bidi
characters: served as named, or refused with a 4xx).

The corpus goes over raw sockets, so no client library tidies it up. ``pytest -s`` prints the
figures: requests tried / 4xx / 5xx / other / no reply, and the small-reply latency.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import math
import select
import socket
import statistics
import struct
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import yaml
from huggingface_hub import HfApi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubtools.localhub import DEV_TOKEN, LocalHub
from hubtools.localhub.fsutil import atomic_writer

HOST = "127.0.0.1"
READ_TIMEOUT = 1.0  # the test servers' read timeout: truncated requests are answered after it
REPLY_WAIT = 6.0  # how long a client waits for a reply before counting "no reply"
MAX_CONNECTIONS = 16
REPO = "test/robust"
CONTENT = b"hello world"  # a.txt in REPO, 11 bytes
# File names a commit may not add: they would not show in a listing as they are.
BAD_FILE_NAMES = [
    ("a newline", "a\nb.txt"),
    ("a carriage return", "a\rb.txt"),
    ("a tab", "a\tb.txt"),
    ("DEL", "a\x7fb.txt"),
    ("a C1 control", "a\x85b.txt"),
    ("U+202E (right-to-left override)", "evil\u202etxt.exe"),
    ("U+2066 (left-to-right isolate)", "a\u2066b.txt"),
    ("U+200F (right-to-left mark)", "a\u200fb.txt"),
    ("U+2028 (line separator)", "a\u2028b.txt"),
    ("a lone surrogate", "a\udcffb.txt"),
    ("a newline in a folder", "dir\n/b.txt"),
]


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def exchange(port: int, raw: bytes, wait: float = REPLY_WAIT) -> Answer | None:
    """Send ``raw`` on a new connection; the reply, or None if none came within ``wait``."""
    method = raw.split(b" ", 1)[0].decode("latin-1")
    with socket.create_connection((HOST, port), timeout=wait) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            pass  # refused before it read everything: the reply may still be there
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            return Answer(response.status, response.headers, response.read())
        except (OSError, http.client.HTTPException):
            return None


def request(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    token: bool = True,
    length: bool = True,
) -> bytes:
    """An HTTP/1.1 request; header text is sent as latin-1, so ``"\\xb2"`` is the byte 0xB2."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {DEV_TOKEN}")
    if length and body:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def post(target: str, body: bytes, content_type: str = "application/json", **headers: str) -> bytes:
    return request("POST", target, body, {"Content-Type": content_type, **headers})


def chunked(target: str, body: bytes) -> bytes:
    return request(
        "POST", target, body, {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}, length=False
    )


def chunked_put(target: str, data: bytes) -> bytes:
    """A PUT of ``data`` in two chunks."""
    half = len(data) // 2
    framed = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, data[:half], len(data) - half, data[half:])
    return request("PUT", target, framed, {"Transfer-Encoding": "chunked"}, length=False)


def as_json(data) -> bytes:
    return json.dumps(data).encode()


def ndjson(*lines) -> bytes:
    """A commit payload; a ``bytes`` line goes as it is."""
    return b"\n".join(line if isinstance(line, bytes) else as_json(line) for line in lines)


def utf8(text: str) -> str:
    """``text`` as a sloppy client sends it: its UTF-8 bytes in a header (see :func:`request`)."""
    return text.encode().decode("latin-1")


def temp_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.rglob(".tmp-*"))


def settled_thread_count() -> int:
    """The thread count once the handler threads of earlier connections have finished."""
    count = threading.active_count()
    for _ in range(30):
        time.sleep(0.1)
        if threading.active_count() == count:
            break
        count = threading.active_count()
    return count


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class LfsTarget:
    """An LFS upload URL the batch API handed out, for ``data``."""

    path: str  # /lfs/objects/<oid>?size=&ticket=
    oid: str
    data: bytes


def lfs_target(hub: LocalHub, data: bytes) -> LfsTarget:
    oid = hashlib.sha256(data).hexdigest()
    body = as_json({"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]})
    answer = exchange(hub.port, post(f"/{REPO}.git/info/lfs/objects/batch", body))
    assert answer is not None and answer.status == 200, answer
    href = urlsplit(answer.json()["objects"][0]["actions"]["upload"]["href"])
    return LfsTarget(f"{href.path}?{href.query}", oid, data)


def start_hub(data_dir: Path, **options) -> LocalHub:
    return LocalHub(data_dir, port=0, token=DEV_TOKEN, **options).start()


def commit_file(hub: LocalHub, path: str, content: bytes, parent: str | None = None) -> Answer | None:
    header = {"summary": f"add {path}", **({"parentCommit": parent} if parent is not None else {})}
    lines = [
        {"key": "header", "value": header},
        {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode()}},
    ]
    return exchange(hub.port, post(f"/api/models/{REPO}/commit/main", ndjson(*lines), "application/x-ndjson"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[LocalHub]:
    hub = start_hub(tmp_path_factory.mktemp("robust-hub"), read_timeout=READ_TIMEOUT, max_connections=MAX_CONNECTIONS)
    HfApi(endpoint=hub.url, token=DEV_TOKEN).create_repo(REPO)
    # Not HfApi.upload_file: its CommitInfo parses the URL against the session hub's HF_ENDPOINT.
    answer = commit_file(hub, "a.txt", CONTENT)
    assert answer is not None and answer.status == 200, answer
    yield hub
    hub.stop()


def malformed_requests(repo: str, head: str, lfs: LfsTarget) -> list[tuple[str, bytes]]:
    """(name, raw request) pairs; each must get a 4xx JSON error with X-Error-Code."""
    api = f"/api/models/{repo}"
    create, delete = "/api/repos/create", "/api/repos/delete"
    paths_info, preupload, commit = f"{api}/paths-info/main", f"{api}/preupload/main", f"{api}/commit/main"
    batch, resolve = f"/{repo}.git/info/lfs/objects/batch", f"/{repo}/resolve/main/a.txt"
    lfs_base = lfs.path.split("?")[0]
    ticket = lfs.path.split("ticket=")[1]
    deep = b"[" * 100_000
    header = {"key": "header", "value": {"summary": "robustness"}}
    add_x = {"key": "file", "value": {"path": "x.txt", "content": "eA=="}}

    def commit_with(*lines) -> bytes:
        return post(commit, ndjson(*lines), "application/x-ndjson")

    def range_get(value: str) -> bytes:
        return request("GET", resolve, headers={"Range": value})

    return [
        # --- request line and protocol ---------------------------------------------------------
        ("request line: one word", b"GARBAGE\r\n\r\n"),
        ("request line: four words", b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n"),
        ("request line: HTTP/0.9", b"GET /\r\n\r\n"),
        ("request line: HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
        ("request line: version 1.1.1", b"GET / HTTP/1.1.1\r\nHost: x\r\n\r\n"),
        ("request line: not HTTP", b"GET / FOO/1.1\r\nHost: x\r\n\r\n"),
        ("request line: non-ASCII digit in the version", b"GET / HTTP/\xb2.1\r\nHost: x\r\n\r\n"),
        ("request line: 70,000 bytes", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("URL: 70,000-byte query", b"GET /api/models?search=" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"),
        ("URL: raw UTF-8 bytes", b"GET /api/models/\xd9\xa1\xd9\xa2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("target: no leading /", request("GET", "api/models")),
        ("target: *", request("OPTIONS", "*")),
        ("target: broken IPv6 URL", request("GET", "http://[::1/api/models")),
        ("target: other scheme", request("GET", "ftp://x/api/models")),
        ("method: PATCH", request("PATCH", api)),
        ("method: PATCH with a body", request("PATCH", api, b'{"private": true}')),
        ("method: OPTIONS", request("OPTIONS", "/api/models")),
        ("method: TRACE", request("TRACE", "/")),
        ("method: CONNECT", request("CONNECT", "/")),
        ("method: PROPFIND", request("PROPFIND", api)),
        ("method: made up", request("BREW", "/")),
        ("method: lower case", request("get", "/api/models")),
        ("method: DELETE on whoami", request("DELETE", "/api/whoami-v2")),
        ("method: PUT on repo info", request("PUT", api, b"{}")),
        ("method: GET on commit", request("GET", commit)),
        # --- header block ----------------------------------------------------------------------
        ("header: 70,000-byte line", request("GET", "/api/models", headers={"X-Big": "a" * 70_000})),
        ("header: 150 header lines", request("GET", "/api/models", headers={f"X-H{i}": "v" for i in range(150)})),
        (
            "header: line without a colon",
            b"GET /api/models HTTP/1.1\r\nHost: x\r\nNoColonHere\r\nConnection: close\r\n\r\n",
        ),
        (
            "header: name with a space",
            b"GET /api/models HTTP/1.1\r\nHost: x\r\nBad Name: v\r\nConnection: close\r\n\r\n",
        ),
        (
            "header: block starts folded",
            b"GET /api/models HTTP/1.1\r\n folded: x\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
        (
            "header: 70,000-byte token",
            request("GET", "/api/whoami-v2", headers={"Authorization": "Bearer " + "a" * 70_000}, token=False),
        ),
        (
            "header: non-ASCII token",
            request("GET", "/api/whoami-v2", headers={"Authorization": "Bearer hf_\xe9\xff"}, token=False),
        ),
        ("header: never ends", b"GET /api/models HTTP/1.1\r\nHost: x\r\n"),
        (
            "header: 2 lines of 40,000 bytes",
            request("GET", "/api/models", headers={"X-A": "a" * 40_000, "X-B": "b" * 40_000}),
        ),
        (
            "header: 95 lines of 60,000 bytes",
            request("GET", "/api/models", headers={f"X-H{i}": "v" * 60_000 for i in range(95)}),
        ),
        # --- body framing ----------------------------------------------------------------------
        *[
            (
                f"Content-Length: {label}",
                request("POST", create, b'{"name": "x"}', {"Content-Length": value}, length=False),
            )
            for label, value in [
                ("-1", "-1"),
                ("abc", "abc"),
                ("1e3", "1e3"),
                ("+13", "+13"),
                ("0x0d", "0x0d"),
                ("1_3", "1_3"),
                ("latin-1 superscript 2", "\xb2"),
                ("Arabic-Indic 12", utf8("١٢")),
                ("5,000 digits", "9" * 5000),
                ("10**15", str(10**15)),
                ("100000, body of 13", "100000"),
            ]
        ],
        (
            "Content-Length: two values",
            request("POST", create, b'{"name": "x"}', {"Content-Length": "13", "Content-length": "12"}, length=False),
        ),
        (
            "Content-Length and chunked",
            request(
                "POST", create, b"0\r\n\r\n", {"Content-Length": "5", "Transfer-Encoding": "chunked"}, length=False
            ),
        ),
        ("Transfer-Encoding: gzip", request("POST", create, b"x", {"Transfer-Encoding": "gzip"}, length=False)),
        (
            "Transfer-Encoding: gzip, chunked",
            request("POST", create, b"0\r\n\r\n", {"Transfer-Encoding": "gzip, chunked"}, length=False),
        ),
        ("chunked: size zz", chunked(create, b"zz\r\n{}\r\n0\r\n\r\n")),
        ("chunked: size -5", chunked(create, b"-5\r\n{}\r\n0\r\n\r\n")),
        ("chunked: size 0x2", chunked(create, b"0x2\r\n{}\r\n0\r\n\r\n")),
        ("chunked: size 1_0", chunked(create, b"1_0\r\n{}\r\n0\r\n\r\n")),
        ("chunked: empty size line", chunked(create, b"\r\n{}\r\n0\r\n\r\n")),
        ("chunked: non-ASCII digit size", chunked(create, b"\xb2\r\n{}\r\n0\r\n\r\n")),
        ("chunked: data longer than its size", chunked(create, b"1\r\n{}\r\n0\r\n\r\n")),
        ("chunked: 20 hex digits", chunked(create, b"f" * 20 + b"\r\n{}\r\n0\r\n\r\n")),
        ("chunked: 10,000-byte size line", chunked(create, b"1" * 10_000)),
        ("chunked: data cut short", chunked(create, b"64\r\n{}")),
        ("chunked: no last chunk", chunked(create, b"2\r\n{}\r\n")),
        ("chunked: well framed, bad field", chunked(create, b'b\r\n{"name": 5}\r\n0\r\n\r\n')),
        # --- JSON bodies: create and delete repo -----------------------------------------------
        ("create: invalid JSON", post(create, b"{")),
        ("create: a JSON list", post(create, b"[]")),
        ("create: a JSON string", post(create, b'"x"')),
        ("create: 100,000 nested lists", post(create, deep)),
        ("create: nested lists in a field", post(create, b'{"name": ' + deep + b"}")),
        ("create: invalid UTF-8", post(create, b'{"name": "\xff\xfe"}')),
        ("create: 5,000-digit number", post(create, b'{"name": ' + b"9" * 5000 + b"}")),
        ("create: name 5", post(create, as_json({"name": 5}))),
        ("create: name a list", post(create, as_json({"name": ["a"]}))),
        ("create: name NaN", post(create, b'{"name": NaN}')),
        ("create: no name", post(create, as_json({"organization": "test"}))),
        ("create: name with a newline", post(create, as_json({"name": "newline\n"}))),
        ("create: organization 5", post(create, as_json({"name": "x", "organization": 5}))),
        ("create: private 'x'", post(create, as_json({"name": "private-x", "private": "x"}))),
        ("create: type 5", post(create, as_json({"name": "x", "type": 5}))),
        ("create: type space", post(create, as_json({"name": "x", "type": "space"}))),
        ("create: form-encoded body", post(create, b"name=x", "application/x-www-form-urlencoded")),
        ("create: no token", request("POST", create, as_json({"name": "x"}), token=False)),
        *[
            (
                f"create: repo id {f'{org}/{name}' if org else name!r}",
                post(create, as_json({"name": name, **({"organization": org} if org else {})})),
            )
            for org, name in [(None, "a."), (None, "a-"), (None, ".a"), (None, "-a"), ("org", "a."), ("org-", "a")]
        ],
        ("delete: name 5", request("DELETE", delete, as_json({"name": 5}))),
        ("delete: unknown repo", request("DELETE", delete, as_json({"name": "nobody-here"}))),
        # --- paths-info and preupload ----------------------------------------------------------
        ("paths-info: paths 5", post(paths_info, as_json({"paths": 5}))),
        ("paths-info: paths [1]", post(paths_info, as_json({"paths": [1]}))),
        ("paths-info: paths [null]", post(paths_info, as_json({"paths": [None]}))),
        ("paths-info: paths an object", post(paths_info, as_json({"paths": {"a.txt": 1}}))),
        ("paths-info: expand []", post(paths_info, as_json({"paths": ["a.txt"], "expand": []}))),
        ("paths-info: expand 'yes'", post(paths_info, as_json({"paths": ["a.txt"], "expand": "yes"}))),
        ("paths-info: path ../x", post(paths_info, as_json({"paths": ["../x"]}))),
        ("paths-info: path with NUL", post(paths_info, as_json({"paths": ["a\x00b"]}))),
        ("paths-info: form path ../..", post(paths_info, b"paths=..%2F..", "application/x-www-form-urlencoded")),
        ("paths-info: invalid JSON", post(paths_info, b"{paths: []}")),
        ("paths-info: nested lists", post(paths_info, deep)),
        ("preupload: files 5", post(preupload, as_json({"files": 5}))),
        ("preupload: files [5]", post(preupload, as_json({"files": [5]}))),
        ("preupload: path 5", post(preupload, as_json({"files": [{"path": 5, "sample": "", "size": 1}]}))),
        ("preupload: sample 5", post(preupload, as_json({"files": [{"path": "a", "sample": 5, "size": 1}]}))),
        ("preupload: size 'x'", post(preupload, as_json({"files": [{"path": "a", "sample": "", "size": "x"}]}))),
        ("preupload: size -1", post(preupload, as_json({"files": [{"path": "a", "sample": "", "size": -1}]}))),
        (
            "preupload: sample not base64",
            post(preupload, as_json({"files": [{"path": "a", "sample": "!!!", "size": 1}]})),
        ),
        *[
            (f"preupload: file name with {label}", post(preupload, as_json({"files": [{"path": name, "size": 1}]})))
            for label, name in BAD_FILE_NAMES
        ],
        # --- commit (NDJSON) -------------------------------------------------------------------
        ("commit: header value 5", commit_with({"key": "header", "value": 5})),
        ("commit: summary 5", commit_with({"key": "header", "value": {"summary": 5}}, add_x)),
        (
            "commit: description a list",
            commit_with({"key": "header", "value": {"summary": "s", "description": []}}, add_x),
        ),
        (
            "commit: parentCommit 5",
            commit_with({"key": "header", "value": {"summary": "s", "parentCommit": 5}}, add_x),
        ),
        (
            "commit: parentCommit a list",
            commit_with({"key": "header", "value": {"summary": "s", "parentCommit": ["a"]}}, add_x),
        ),
        (
            "commit: parentCommit empty",
            commit_with({"key": "header", "value": {"summary": "s", "parentCommit": ""}}, add_x),
        ),
        (
            "commit: parentCommit one char",
            commit_with({"key": "header", "value": {"summary": "s", "parentCommit": head[0]}}, add_x),
        ),
        ("commit: line a list", commit_with(header, [1, 2])),
        ("commit: line a string", commit_with(header, "file")),
        ("commit: line null", commit_with(header, None)),
        ("commit: no value", commit_with(header, {"key": "file"})),
        ("commit: no key", commit_with(header, {"value": {"path": "x"}})),
        ("commit: key 5", commit_with(header, {"key": 5, "value": {}})),
        ("commit: unknown key", commit_with(header, {"key": "copy", "value": {"path": "x"}})),
        ("commit: file path 5", commit_with(header, {"key": "file", "value": {"path": 5, "content": "eA=="}})),
        ("commit: file without path", commit_with(header, {"key": "file", "value": {"content": "eA=="}})),
        ("commit: content not base64", commit_with(header, {"key": "file", "value": {"path": "x", "content": "!!"}})),
        ("commit: content 5", commit_with(header, {"key": "file", "value": {"path": "x", "content": 5}})),
        (
            "commit: encoding utf-8",
            commit_with(header, {"key": "file", "value": {"path": "x", "content": "x", "encoding": "utf-8"}}),
        ),
        (
            "commit: lfsFile oid 5",
            commit_with(header, {"key": "lfsFile", "value": {"path": "x.bin", "oid": 5, "size": 1}}),
        ),
        (
            "commit: lfsFile size '12'",
            commit_with(header, {"key": "lfsFile", "value": {"path": "x.bin", "oid": "a" * 64, "size": "12"}}),
        ),
        (
            "commit: lfsFile size true",
            commit_with(header, {"key": "lfsFile", "value": {"path": "x.bin", "oid": "a" * 64, "size": True}}),
        ),
        (
            "commit: lfsFile not uploaded",
            commit_with(header, {"key": "lfsFile", "value": {"path": "x.bin", "oid": "a" * 64, "size": 1}}),
        ),
        ("commit: delete a missing file", commit_with(header, {"key": "deletedFile", "value": {"path": "nope.txt"}})),
        ("commit: deletedFolder path 5", commit_with(header, {"key": "deletedFolder", "value": {"path": 5}})),
        ("commit: nested lists", commit_with(header, deep)),
        ("commit: invalid UTF-8", commit_with(header, b'{"key": "file", "value": {"path": "\xff"}}')),
        ("commit: unknown branch", post(f"{api}/commit/nope", ndjson(header, add_x), "application/x-ndjson")),
        ("commit: create_pr", post(f"{commit}?create_pr=1", ndjson(header, add_x), "application/x-ndjson")),
        ("commit: no token", request("POST", commit, ndjson(header, add_x), token=False)),
        *[
            (f"commit: file name with {label}", commit_with(header, {"key": "file", "value": {"path": name}}))
            for label, name in BAD_FILE_NAMES
        ],
        # --- LFS -------------------------------------------------------------------------------
        ("LFS batch: download", post(batch, as_json({"operation": "download", "objects": []}))),
        ("LFS batch: operation 5", post(batch, as_json({"operation": 5, "objects": []}))),
        ("LFS batch: objects 5", post(batch, as_json({"operation": "upload", "objects": 5}))),
        ("LFS batch: objects [5]", post(batch, as_json({"operation": "upload", "objects": [5]}))),
        ("LFS batch: invalid JSON", post(batch, b"{")),
        *[
            (f"LFS upload: size {label}", request("PUT", f"{lfs_base}?size={size}&ticket={ticket}", lfs.data))
            for label, size in [
                ("latin-1 superscript 2", quote("²")),
                ("Arabic-Indic", quote("١٢")),
                ("5,000 digits", "9" * 5000),
                ("with leading zeros", "0" + str(len(lfs.data))),
                ("missing", ""),
            ]
        ],
        ("LFS upload: no ticket", request("PUT", f"{lfs_base}?size={len(lfs.data)}", lfs.data)),
        (
            "LFS upload: oid not hex",
            request("PUT", f"/lfs/objects/{'z' * 64}?size={len(lfs.data)}&ticket={ticket}", lfs.data),
        ),
        ("LFS upload: Content-Length differs", request("PUT", lfs.path, lfs.data[:-1])),
        ("LFS upload: wrong content", request("PUT", lfs.path, bytes(len(lfs.data)))),
        (
            "LFS upload: body cut short",
            request("PUT", lfs.path, lfs.data[:100], {"Content-Length": str(len(lfs.data))}, length=False),
        ),
        ("LFS upload: chunked, longer than the ticket", chunked_put(lfs.path, lfs.data + b"more")),
        ("LFS upload: chunked, shorter than the ticket", chunked_put(lfs.path, lfs.data[:-1])),
        # --- Range -----------------------------------------------------------------------------
        ("Range: 5,000-digit start", range_get("bytes=" + "9" * 5000 + "-")),
        ("Range: abc", range_get("bytes=abc")),
        ("Range: two ranges", range_get("bytes=1-2,3-4")),
        ("Range: end before start", range_get("bytes=5-2")),
        ("Range: past the end", range_get("bytes=100-200")),
        ("Range: not bytes", range_get("items=0-1")),
        ("Range: non-ASCII digit", range_get("bytes=\xb2-3")),
        ("Range: Arabic-Indic digits", range_get("bytes=" + utf8("١-٢"))),
        ("Range: no numbers", range_get("bytes=-")),
        # --- paths and names -------------------------------------------------------------------
        ("path: bad percent-encoding", request("GET", "/api/models/%ZZ")),
        ("path: NUL in repo id", request("GET", "/api/models/a%00b")),
        ("path: NUL in file path", request("GET", f"/{repo}/resolve/main/a%00b")),
        ("path: .. in tree path", request("GET", f"{api}/tree/main/%2e%2e")),
        ("path: encoded traversal", request("GET", f"/{repo}/resolve/main/..%2F..%2Fetc%2Fpasswd")),
        ("path: invalid UTF-8 escape", request("GET", "/api/models/%C3%28")),
        ("path: 10,000-char repo id", request("GET", "/api/models/" + "a" * 10_000)),
        ("path: 1,200-char file path", request("GET", f"/{repo}/resolve/main/" + "a/" * 600 + "b")),
        ("path: unknown API", request("GET", "/api/nothing")),
        ("path: /datasets/", request("GET", "/datasets/")),
        ("path: unknown revision", request("GET", f"{api}/revision/%ff")),
        ("path: unknown commit", request("GET", f"{api}/commits/nope")),
        ("whoami: no token", request("GET", "/api/whoami-v2", token=False)),
        # --- validate-yaml ---------------------------------------------------------------------
        ("validate-yaml: content 5", post("/api/validate-yaml", as_json({"content": 5, "repoType": "model"}))),
        (
            "validate-yaml: nested YAML",
            post("/api/validate-yaml", as_json({"content": "---\na: " + "[" * 5000 + "\n---\n", "repoType": "model"})),
        ),
    ]


def problem(answer: Answer | None) -> str | None:
    """What is wrong with the reply to a malformed request; None if it is a proper 4xx."""
    if answer is None:
        return "no reply"
    if not 400 <= answer.status < 500:
        return f"HTTP {answer.status}"
    if not answer.headers.get("X-Error-Code"):
        return f"HTTP {answer.status} without X-Error-Code"
    try:
        error = answer.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {answer.status}, body not JSON with 'error': {answer.body[:80]!r}"
    return None if isinstance(error, str) and error else "empty error message"


def test_malformed_requests_get_4xx_json_errors(hub):
    api = HfApi(endpoint=hub.url, token=DEV_TOKEN)
    head = api.model_info(REPO).sha
    lfs = lfs_target(hub, b"lfs object for the corpus " * 40)
    corpus = malformed_requests(REPO, head, lfs)
    threads_before = settled_thread_count()

    failures, kinds = [], Counter()
    for name, raw in corpus:
        answer = exchange(hub.port, raw)
        kinds["no reply" if answer is None else f"{answer.status // 100}xx"] += 1
        if (wrong := problem(answer)) is not None:
            failures.append(f"{name}: {wrong}")
    print(
        f"\nlocal Hub malformed-request corpus: {len(corpus)} tried, {kinds['4xx']} 4xx, {kinds['5xx']} 5xx, "
        f"{len(corpus) - kinds['4xx'] - kinds['5xx'] - kinds['no reply']} other, {kinds['no reply']} no reply"
    )

    assert len(corpus) >= 100
    assert not failures, "\n".join(failures)
    # Still serving, through the real client, and nothing left behind.
    assert api.model_info(REPO).sha == head
    assert [f.path for f in api.get_paths_info(REPO, ["a.txt"])] == ["a.txt"]
    assert not api.repo_exists("private-x")
    assert not hub.storage.blobs.has(lfs.oid), "an upload that is not the ticket's size is not stored"
    assert not [p for p in (hub.data_dir / "repos").rglob("*") if "\n" in p.name]
    assert wait_for(lambda: threading.active_count() <= threads_before)
    assert not temp_files(hub.data_dir)


def test_unknown_methods_get_405_with_allow(hub):
    for method in ("PATCH", "OPTIONS", "TRACE"):
        answer = exchange(hub.port, request(method, f"/api/models/{REPO}"))
        assert answer is not None and answer.status == 405, (method, answer)
        assert answer.headers["X-Error-Code"] == "MethodNotAllowed"
        assert answer.headers["Allow"] == "GET"
        assert answer.headers["Content-Type"] == "application/json"


def test_well_formed_chunked_bodies_still_work(hub):
    body = as_json({"name": "chunked-ok"})
    framed = b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(body), body)
    answer = exchange(hub.port, chunked("/api/repos/create", framed))
    assert answer is not None and answer.status == 200, answer
    lfs = lfs_target(hub, b"chunked upload " * 100)
    answer = exchange(hub.port, chunked_put(lfs.path, lfs.data))
    assert answer is not None and answer.status == 200, answer


def test_idle_connections_are_closed_after_the_read_timeout(hub):
    threads_before = settled_thread_count()
    sockets = [socket.create_connection((HOST, hub.port), timeout=REPLY_WAIT) for _ in range(12)]
    try:
        assert wait_for(lambda: threading.active_count() >= threads_before + len(sockets), 3)
        started = time.monotonic()
        for sock in sockets:
            assert sock.recv(1) == b"", "the server closes an idle connection without a reply"
        assert time.monotonic() - started < READ_TIMEOUT + 3
    finally:
        for sock in sockets:
            sock.close()
    assert wait_for(lambda: threading.active_count() <= threads_before, 3)


def test_connections_over_the_bound_get_a_503(tmp_path):
    bound = 4
    hub = start_hub(tmp_path, read_timeout=5.0, max_connections=bound)
    threads_before = settled_thread_count()
    idle = [socket.create_connection((HOST, hub.port), timeout=REPLY_WAIT) for _ in range(bound)]
    try:
        assert wait_for(lambda: threading.active_count() >= threads_before + bound, 3)
        refused = [exchange(hub.port, request("GET", "/api/models")) for _ in range(3 * bound)]
        assert threading.active_count() <= threads_before + bound
        for answer in refused:
            assert answer is not None and answer.status == 503, answer
            assert answer.headers["X-Error-Code"] == "ServiceUnavailable"
            assert answer.headers["Retry-After"]
            assert "connections" in answer.json()["error"]
    finally:
        for sock in idle:
            sock.close()
    try:
        assert wait_for(
            lambda: (exchange(hub.port, request("GET", "/api/models")) or Answer(0, None, b"")).status == 200
        )
    finally:
        hub.stop()


def test_parent_commit_must_name_the_head(hub):
    api = HfApi(endpoint=hub.url, token=DEV_TOKEN)
    head = api.model_info(REPO).sha

    def commit(parent: str, content: bytes) -> Answer | None:
        return commit_file(hub, "parent.txt", content, parent)

    for parent in ("", head[0], head[:6], head[:39] + "x", "0" * 40, head.upper()):
        answer = commit(parent, b"refused")
        assert answer is not None and answer.status == 412, (parent, answer)
        assert answer.headers["X-Error-Code"] == "PreconditionFailed"
    assert api.model_info(REPO).sha == head

    shorthand = commit(head[:7], b"first")  # huggingface_hub documents 7-character shorthands
    assert shorthand is not None and shorthand.status == 200, shorthand
    new_head = shorthand.json()["commitOid"]
    assert commit(head, b"stale").status == 412
    assert commit(new_head, b"second").status == 200


def test_stalled_upload_gets_408_and_leaves_no_temp_file(hub):
    lfs = lfs_target(hub, b"stalled upload " * 20_000)
    raw = request(
        "PUT", lfs.path, lfs.data[: len(lfs.data) // 2], {"Content-Length": str(len(lfs.data))}, length=False
    )
    answer = exchange(hub.port, raw)  # the rest never comes; the server gives up after its read timeout
    assert answer is not None and answer.status == 408, answer
    assert answer.headers["X-Error-Code"] == "RequestTimeout"
    assert not temp_files(hub.data_dir)


def test_upload_cut_off_by_the_client_leaves_no_temp_file(hub):
    lfs = lfs_target(hub, b"killed upload " * 20_000)
    raw = request(
        "PUT", lfs.path, lfs.data[: len(lfs.data) // 2], {"Content-Length": str(len(lfs.data))}, length=False
    )
    with socket.create_connection((HOST, hub.port), timeout=REPLY_WAIT) as sock:
        sock.sendall(raw)
        assert wait_for(lambda: bool(temp_files(hub.data_dir)), 3), "the upload is under way"
    assert wait_for(lambda: not temp_files(hub.data_dir), 3)


def test_orphaned_temp_files_are_removed_at_start_up(tmp_path):
    orphans = [tmp_path / "blobs" / "tmp" / ".tmp-crashed", tmp_path / "repos" / "models" / "a--b" / ".tmp-x"]
    for orphan in orphans:
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(b"left by a killed server")
    target = tmp_path / "blobs" / "ab" / "live"
    target.parent.mkdir(parents=True)
    with atomic_writer(target, tmp_dir=tmp_path / "blobs" / "tmp") as out:  # a write under way elsewhere
        out.write(b"partial")
        LocalHub(tmp_path, port=0).stop()
        assert [p.parent for p in temp_files(tmp_path)] == [tmp_path / "blobs" / "tmp"]
    assert target.read_bytes() == b"partial"
    assert not temp_files(tmp_path)


def test_small_replies_over_a_kept_alive_connection_are_fast(hub):
    """Headers and body leave in one send; written separately, Nagle and delayed ACK add ~40 ms."""
    conn = http.client.HTTPConnection(HOST, hub.port, timeout=REPLY_WAIT)
    times = []
    try:
        for _ in range(50):
            started = time.perf_counter()
            conn.request("GET", "/api/whoami-v2", headers={"Authorization": f"Bearer {DEV_TOKEN}"})
            response = conn.getresponse()
            assert response.status == 200 and response.read()
            times.append(time.perf_counter() - started)
    finally:
        conn.close()
    median = statistics.median(times)
    print(
        f"\nsmall-reply latency over one kept-alive connection: median {median * 1000:.1f} ms "
        f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})"
    )
    assert median < 0.020


# --- the request head as a whole: a deadline and a byte budget ---------------------------------


def trickle(port: int, start: bytes, byte: bytes, most: int = 60) -> bytes | None:
    """Send ``start``, then ``byte`` every 0.2 s; what the server sent before it closed the
    connection (``b""`` for nothing), or None if it kept it open for ``most`` bytes."""
    with socket.create_connection((HOST, port), timeout=REPLY_WAIT) as sock:
        sock.sendall(start)
        for _ in range(most):
            if select.select([sock], [], [], 0.2)[0]:
                return sock.recv(65536)
            try:
                sock.sendall(byte)
            except OSError:
                return b""
    return None


@pytest.fixture
def strict_hub(tmp_path) -> Iterator[LocalHub]:
    """Reads may wait 5 s each, a request head 1 s in all."""
    hub = start_hub(tmp_path, read_timeout=5.0, head_timeout=1.0)
    yield hub
    hub.stop()


def test_trickled_headers_get_a_408_at_the_head_timeout(strict_hub):
    sent = trickle(strict_hub.port, b"GET /api/models HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
    assert sent is not None, "the server kept a trickled request head open"
    assert sent.startswith(b"HTTP/1.1 408 ") and b"RequestTimeout" in sent, sent
    assert exchange(strict_hub.port, request("GET", "/api/models")).status == 200


def test_a_trickled_request_line_is_closed_at_the_head_timeout(strict_hub):
    assert trickle(strict_hub.port, b"GET /", b"a") == b""


def test_head_timeout_counts_from_the_first_byte(strict_hub):
    """A kept-alive connection may idle between requests for the read timeout, not the head's."""
    conn = http.client.HTTPConnection(HOST, strict_hub.port, timeout=REPLY_WAIT)
    try:
        for idle in (0, 1.5):  # then idle past the head timeout, within the read timeout
            time.sleep(idle)
            conn.request("GET", "/api/models")
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b"[]"
            assert conn.sock is not None, "the same connection served both requests"
    finally:
        conn.close()


def test_client_gone_mid_upload_costs_one_log_line(hub, caplog):
    caplog.set_level(logging.INFO, logger="hubtools.localhub")
    lfs = lfs_target(hub, b"abandoned upload " * 60_000)
    raw = request(
        "PUT", lfs.path, lfs.data[: len(lfs.data) // 2], {"Content-Length": str(len(lfs.data))}, length=False
    )
    with socket.create_connection((HOST, hub.port), timeout=REPLY_WAIT) as sock:
        sock.sendall(raw)
        assert wait_for(lambda: bool(temp_files(hub.data_dir)), 3), "the upload is under way"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset

    def logged(record: logging.LogRecord) -> bool:
        return record.exc_info is not None or "the client is gone" in record.getMessage()

    assert wait_for(lambda: any(logged(r) for r in caplog.records))
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert len([r for r in caplog.records if "the client is gone" in r.getMessage()]) == 1


# --- fuzzing: README front matter and file names -----------------------------------------------

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_REPO = "test/fuzz"
# PyYAML's dump and load disagree on the YAML 1.1 line breaks NEL, LS and PS in a string.
YAML_TEXT = st.text(st.characters(exclude_characters="\x85\u2028\u2029"), max_size=10)
OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
YAML_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63) | st.integers(max_value=-(2**63) - 1),
    st.floats(),
    YAML_TEXT,
    st.dates(),
    st.datetimes(timezones=st.none() | OFFSETS),
    st.binary(max_size=12),
)
YAML_KEYS = st.one_of(YAML_TEXT, st.integers(), st.booleans(), st.none(), st.dates(), st.floats())
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(YAML_KEYS, inner, max_size=4),
        st.sets(YAML_TEXT | st.integers(), max_size=3),
    ),
    max_leaves=16,
)
# YAML text from pieces that exercise tags, anchors, aliases, merges and odd scalars.
YAML_PIECES = st.sampled_from(
    [
        *("a", "b", ": ", "- ", "\n", "  ", "[", "]", "{", "}", ", ", "? ", "<<: ", "#c", "~", "|\n  ", "\x1f"),
        *("&x ", "*x", "&y ", "*y", "!foo ", "!!python/tuple ", "'q'", '"\\u00e9"', '"\\ud800"'),
        *("!!binary ", "!!set ", "!!timestamp ", "!!int ", "!!float ", "!!bool ", "!!str ", "!!omap ", "!!pairs "),
        *("2024-01-01", "2024-01-01 10:00:00.5 +02:00", "0b101", "0x1F", "1e400", ".nan", "-.inf", "aGk=", "9" * 30),
    ]
)
# What a file name may not hold (the rule the server applies, restated): controls, line breaks,
# lone surrogates and the bidi controls ALM, LRM, RLM, LRE..RLO and LRI..PDI.
UNSHOWABLE = {"Cc", "Cs", "Zl", "Zp"}
BIDI = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
NAME_CHARS = st.one_of(
    st.characters(),
    st.sampled_from(
        list("\n\r\t\x00\x1b\x7f\x85\u061c\u200e\u200f\u202a\u202e\u2066\u2069\u2028\udcff\ud800/\\. %?#")
    ),
)


def json_safe(value):
    """What the local Hub's card data makes of a YAML value (see hubtools/localhub/cardmeta.py)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (list, set)):
        return [json_safe(item) for item in value]
    if isinstance(value, dict):
        keys = [json_safe(key) for key in value]
        return {k if isinstance(k, str) else json.dumps(k): json_safe(v) for k, v in zip(keys, value.values())}
    return value


def strict_json(body: bytes):
    """``body`` as JSON, refusing the NaN and Infinity that Python's own encoder writes."""
    return json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} in a JSON reply"))


@pytest.fixture(scope="module")
def fuzz_repo(hub) -> str:
    answer = exchange(hub.port, post("/api/repos/create", as_json({"name": "fuzz", "organization": "test"})))
    assert answer is not None and answer.status == 200, answer
    return FUZZ_REPO


def commit_to(hub: LocalHub, repo: str, path: str, content: bytes) -> Answer | None:
    lines = [
        {"key": "header", "value": {"summary": f"add {path[:40]}"}},
        {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode()}},
    ]
    return exchange(hub.port, post(f"/api/models/{repo}/commit/main", ndjson(*lines), "application/x-ndjson"))


def card_data_of(hub: LocalHub, repo: str, front_matter: str):
    """Commit a README with ``front_matter``, then the ``cardData`` the repo info gives."""
    answer = commit_to(hub, repo, "README.md", f"---\n{front_matter}\n---\n# fuzz\n".encode())
    assert answer is not None and answer.status == 200, answer
    info = exchange(hub.port, request("GET", f"/api/models/{repo}"))
    assert info is not None and info.status == 200, info
    card = strict_json(info.body)["cardData"]
    assert isinstance(card, dict)
    return card


@FUZZ
@given(value=YAML_VALUES)
def test_fuzz_front_matter_values_come_back_json_safe(hub, fuzz_repo, value):
    front_matter = yaml.safe_dump({"card": value, "again": value}, sort_keys=False, allow_unicode=True)
    expected = json_safe(value)
    assert card_data_of(hub, fuzz_repo, front_matter) == {"card": expected, "again": expected}


@FUZZ
@given(front_matter=st.lists(YAML_PIECES, max_size=40).map("".join) | st.text(max_size=40))
def test_fuzz_front_matter_text_never_fails_the_repo_info(hub, fuzz_repo, front_matter):
    card_data_of(hub, fuzz_repo, front_matter)
    content = f"---\n{front_matter}\n---\n"
    answer = exchange(hub.port, post("/api/validate-yaml", as_json({"content": content, "repoType": "model"})))
    assert answer is not None and answer.status in (200, 400), answer
    assert (answer.status == 400) == bool(strict_json(answer.body)["errors"])


@FUZZ
@given(name=st.text(NAME_CHARS, min_size=1, max_size=24))
def test_fuzz_file_names_are_served_as_named_or_refused(hub, fuzz_repo, name):
    preupload = post(f"/api/models/{fuzz_repo}/preupload/main", as_json({"files": [{"path": name, "size": 1}]}))
    checked, committed = exchange(hub.port, preupload), commit_to(hub, fuzz_repo, name, b"x")
    for answer in (checked, committed):
        assert answer is not None and (answer.status == 200 or problem(answer) is None), (name, answer)
    # A commit may also refuse a name preupload takes: a file where a folder is, or the other way.
    assert checked.status == 200 or committed.status != 200, f"preupload refused {name!r}, the commit took it"
    if any(c in BIDI or unicodedata.category(c) in UNSHOWABLE for c in name):
        assert (checked.status, committed.status) == (400, 400), f"{name!r} would not show as it is"
    target = quote(name, errors="surrogatepass")
    for path in (
        f"/{fuzz_repo}/resolve/main/{target}",
        f"/api/models/{fuzz_repo}/tree/main/{target}",
        f"/{fuzz_repo}",
    ):
        answer = exchange(hub.port, request("GET", path))
        assert answer is not None and (answer.status == 200 or problem(answer) is None), (path, answer)
    if committed.status == 200:
        tree = exchange(hub.port, request("GET", f"/api/models/{fuzz_repo}/tree/main?recursive=1"))
        assert name in [item["path"] for item in strict_json(tree.body)]
        answer = exchange(hub.port, request("GET", f"/{fuzz_repo}/resolve/main/{target}"))
        assert (answer.status, answer.body) == (200, b"x"), name
