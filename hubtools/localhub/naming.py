"""Validation of repo types, repo ids, revisions and file paths.

Everything that reaches the disk or a URL passes through here first, so a traversal attempt
(``..``, an absolute path, a backslash) is refused with a 4xx before any file is touched.
Repo ids follow ``huggingface_hub.utils.validate_repo_id`` (a repo it refuses could not be
addressed by any client): ``name`` or ``namespace/name``, ASCII letters, digits, ``-``, ``_``
and ``.``, starting and ending with a letter, digit or ``_``, no ``--``, ``..`` or ``.git``
ending, at most 96 characters a part. A path a commit adds must also be text a listing shows
as it is: no control characters, bidirectional-text controls or lone surrogates.
"""

from __future__ import annotations

import re
import unicodedata

from hubtools.errors import InvalidPathError, InvalidRepoIdError

REPO_TYPES = ("model", "dataset")
# URL prefixes of the repo types: `/api/models/...` and `/api/datasets/...`.
TYPE_BY_PLURAL = {f"{t}s": t for t in REPO_TYPES}
# First URL segments that are routes, so no repo (or namespace) may be named after them.
RESERVED_NAMES = frozenset({"api", "models", "datasets", "spaces", "lfs", "static"})

# Used with fullmatch: with match, "$" also matches before a final newline ("name\n").
# validate_repo_id's REPO_ID_REGEX per part: r"\b[\w\-.]{1,96}\b", with \w in ASCII.
_PART = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")
MAX_PATH_LENGTH = 1000
# Characters that make a listed name differ from the file: line breaks and other controls (Cc,
# Zl, Zp), lone surrogates (Cs, not encodable as UTF-8), and the bidi controls that reorder text.
UNSHOWABLE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_repo_type(repo_type: str | None) -> str:
    """Return ``repo_type`` (default ``model``) or refuse types this Hub does not host."""
    repo_type = repo_type or "model"
    if repo_type not in REPO_TYPES:
        raise InvalidRepoIdError(
            f"Repo type {repo_type!r} is not supported by the local Hub; use one of {', '.join(REPO_TYPES)}."
        )
    return repo_type


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is ``name`` or ``namespace/name``; raise otherwise."""
    parts = repo_id.split("/")
    ok = 1 <= len(parts) <= 2 and all(
        _PART.fullmatch(p) and "--" not in p and ".." not in p and not p.endswith(".git") for p in parts
    )
    if not ok or parts[0].lower() in RESERVED_NAMES:
        raise InvalidRepoIdError(
            f"Invalid repo id {repo_id!r}: use 'name' or 'namespace/name' with letters, digits, '-', '_' or '.',"
            " starting and ending with a letter, digit or '_' (no '--' or '..', at most 96 characters per part)."
        )
    return repo_id


def check_branch(name: str) -> str:
    """Return ``name`` if it can be a branch name; raise otherwise."""
    if not _BRANCH.fullmatch(name) or ".." in name or "//" in name or name.endswith(("/", ".lock")):
        raise InvalidPathError(f"Invalid branch name {name!r}.")
    return name


def check_path(path: str) -> str:
    """Return a repo file path if it is relative, normalised and inside the repo; raise otherwise."""
    segments = path.split("/")
    bad = (
        not path
        or len(path) > MAX_PATH_LENGTH
        or "\\" in path
        or "\x00" in path
        or any(s in ("", ".", "..") for s in segments)
        or segments[0] == ".git"
    )
    if bad:
        raise InvalidPathError(
            f"Invalid path in repo {path!r}: paths are relative, '/'-separated, without '.', '..' or empty parts."
        )
    return path


def check_new_path(path: str) -> str:
    """Like :func:`check_path`, for a file a commit adds: it must also show as it is in a listing."""
    check_path(path)
    bad = next((c for c in path if c in BIDI_CONTROLS or unicodedata.category(c) in UNSHOWABLE_CATEGORIES), None)
    if bad is not None:
        raise InvalidPathError(
            f"Invalid file name {path[:200]!r}: character U+{ord(bad):04X} is not allowed in file names"
            " (no control characters, line breaks, bidirectional-text controls or lone surrogates)."
        )
    return path


def check_folder(path: str) -> str:
    """Like :func:`check_path` but ``""`` (the repo root) and a trailing ``/`` are allowed."""
    path = path.rstrip("/")
    return path if not path else check_path(path)


def repo_dir_name(repo_id: str) -> str:
    """Directory name of a repo on disk: ``org/name`` -> ``org--name`` (``--`` is not allowed in ids)."""
    return check_repo_id(repo_id).replace("/", "--")


def repo_id_from_dir_name(name: str) -> str:
    return name.replace("--", "/")


def url_prefix(repo_type: str) -> str:
    """Prefix of a repo's web URLs: ``""`` for models, ``datasets/`` for datasets."""
    return "" if repo_type == "model" else f"{repo_type}s/"
