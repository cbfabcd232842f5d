"""Content-addressed blob store: ``<root>/<sha256[:2]>/<sha256>``, written atomically.

A blob is written to a temporary file in the same filesystem while its sha256 is computed,
then moved into place with ``os.replace``; a reader never sees a half-written blob and a
blob whose content does not match the announced sha256 is never stored.
Also home to the two git hashes the Hub exposes: the git blob sha1 (``ETag`` of regular
files) and the LFS pointer (whose sha1 is the ``ETag`` of LFS files).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import BinaryIO

from hubtools.errors import BlobMismatchError
from hubtools.localhub.fsutil import atomic_writer

SHA256_RE = re.compile(r"[0-9a-f]{64}")  # use with fullmatch
CHUNK = 1024 * 1024


def git_blob_sha1(data: bytes) -> str:
    """The git object id of ``data`` stored as a blob (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def wrong_size(sha256: str, size: int, got: str) -> BlobMismatchError:
    """The refusal of an upload whose length is not the one announced."""
    return BlobMismatchError(f"Upload of {sha256} must be {size} bytes, got {got}.")


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that stands in the git tree for an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    def path(self, sha256: str) -> Path:
        if not SHA256_RE.fullmatch(sha256):
            raise BlobMismatchError(f"Invalid sha256 {sha256!r}: expected 64 lowercase hex digits.")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str, size: int | None = None) -> bool:
        try:
            st = self.path(sha256).stat()
        except (FileNotFoundError, BlobMismatchError):
            return False
        return size is None or st.st_size == size

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has(sha256, len(data)):
            self._store(lambda out: out.write(data), sha256)
        return sha256

    def put_file(self, source: Path) -> str:
        """Store a local file; hashing first so an existing blob is not copied again."""
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        sha256 = digest.hexdigest()
        if not self.has(sha256, source.stat().st_size):
            with open(source, "rb") as f:
                self._store(lambda out: shutil.copyfileobj(f, out, CHUNK), sha256)
        return sha256

    def put_stream(self, stream: BinaryIO, size: int, expected_sha256: str) -> None:
        """Store what ``stream`` holds: exactly ``size`` bytes that hash to ``expected_sha256``.

        The bytes are counted, as a chunked body announces no length: more or fewer than
        ``size`` is refused (:func:`wrong_size`) and nothing is stored.
        """
        self.path(expected_sha256)  # validates the name before reading anything

        def copy(out: BinaryIO) -> None:
            digest, left = hashlib.sha256(), size
            while left > 0:
                chunk = stream.read(min(CHUNK, left))
                if not chunk:
                    raise wrong_size(expected_sha256, size, str(size - left))
                digest.update(chunk)
                out.write(chunk)
                left -= len(chunk)
            if stream.read(1):
                raise wrong_size(expected_sha256, size, "more")
            if digest.hexdigest() != expected_sha256:
                raise BlobMismatchError(
                    f"Uploaded content has sha256 {digest.hexdigest()}, not the announced {expected_sha256}."
                )

        self._store(copy, expected_sha256)

    def _store(self, write, sha256: str) -> None:
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(target, tmp_dir=self.tmp) as out:
            write(out)
