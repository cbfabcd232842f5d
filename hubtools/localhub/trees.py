"""A commit's tree: a flat mapping ``path -> Entry``; folders are implied by the paths.

Pure functions only (no disk): listing a folder, folder ids, and the LFS rule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property

from hubtools.localhub.blobs import git_blob_sha1, lfs_pointer

Tree = Mapping[str, "Entry"]

# Files the real Hub stores in LFS by default (its initial .gitattributes), plus any file
# over 10 MB or with a NUL byte in its first 512 bytes.
LFS_SUFFIXES = (
    ".7z .arrow .bin .bz2 .ckpt .ftz .gz .h5 .joblib .lz4 .mlmodel .model .msgpack .npy .npz .onnx .ot"
    " .parquet .pb .pickle .pkl .pt .pth .rar .safetensors .tar .tflite .tgz .wasm .xz .zip .zst"
).split()
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()


def needs_lfs(path: str, size: int, sample: bytes = b"") -> bool:
    return path.endswith(tuple(LFS_SUFFIXES)) or size > LFS_MIN_SIZE or b"\x00" in sample


@dataclass(frozen=True)
class Entry:
    """One file: its content address, size, and whether git stores it as an LFS pointer."""

    sha256: str
    size: int
    lfs: bool
    sha1: str | None = None  # git blob sha1 of the content; kept for regular files

    @cached_property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @cached_property
    def oid(self) -> str:
        """The git blob id of what git stores: the content, or the LFS pointer."""
        if self.lfs:
            return git_blob_sha1(lfs_pointer(self.sha256, self.size))
        assert self.sha1 is not None, "regular entries carry their git sha1"
        return self.sha1

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict) -> Entry:
        return cls(**data)


def folders_of(tree: Tree) -> set[str]:
    """Every folder that holds a file of ``tree`` (``""``, the root, excluded)."""
    out: set[str] = set()
    for path in tree:
        parts = path.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


def is_folder(tree: Tree, path: str) -> bool:
    return path == "" or any(p.startswith(path + "/") for p in tree)


def folder_id(tree: Tree, folder: str) -> str:
    """A stable 40-hex id for the contents of ``folder`` (stands in for git's tree sha)."""
    prefix = f"{folder}/" if folder else ""
    listing = sorted((p, e.oid) for p, e in tree.items() if p.startswith(prefix))
    return hashlib.sha1(json.dumps(listing).encode()).hexdigest()


def list_folder(tree: Tree, folder: str, recursive: bool) -> list[tuple[str, Entry | None]]:
    """Children of ``folder`` as ``(path, entry)``, entry ``None`` for a folder; folders first."""
    prefix = f"{folder}/" if folder else ""
    files = [(p, e) for p, e in tree.items() if p.startswith(prefix)]
    subfolders = {f for f in folders_of(dict(files)) if f.startswith(prefix) and f != folder}
    if not recursive:
        files = [(p, e) for p, e in files if "/" not in p[len(prefix) :]]
        subfolders = {f for f in subfolders if "/" not in f[len(prefix) :]}
    listing: list[tuple[str, Entry | None]] = [(f, None) for f in sorted(subfolders)]
    return listing + sorted(files)


def fingerprint(tree: Tree, path: str) -> str | None:
    """What ``path`` (file or folder) is in ``tree``, to tell whether a commit changed it."""
    entry = tree.get(path)
    if entry is not None:
        return f"{entry.oid}:{entry.lfs}"
    return folder_id(tree, path) if is_folder(tree, path) else None
