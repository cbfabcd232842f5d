"""A model's size: the bytes of the weight files its ``model_format.json`` names, raw and gzipped."""

from __future__ import annotations

import zlib
from pathlib import Path


def gzip_size_mb(path: Path, level: int = 6) -> float:
    """Bytes of ``path`` after gzip-style DEFLATE at ``level``, in MB (2**20): what zeros save on
    disk or on the wire, while a dense runtime still loads and multiplies every one of them."""
    compressor, total = zlib.compressobj(level, zlib.DEFLATED, 31), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            total += len(compressor.compress(chunk))
    return (total + len(compressor.flush())) / 2**20


def files_size_mb(files: list[Path]) -> dict[str, float]:
    return {
        "size_mb": sum(Path(f).stat().st_size for f in files) / 2**20,
        "size_gzip_mb": sum(gzip_size_mb(f) for f in files),
    }


def weight_files(model_dir: Path) -> list[Path]:
    """A model folder's weight files (its ``model_format.json`` ``weights``)."""
    from ..runfolder import read_format

    return [Path(model_dir) / name for name in read_format(model_dir).weights]


def size_mb(model_dir: Path) -> float:
    """The raw size of a model folder's weight files, in MB (2**20)."""
    return sum(f.stat().st_size for f in weight_files(model_dir)) / 2**20


def weights_size_mb(model_dir: Path) -> dict[str, float]:
    """Raw and gzip size of a model folder's weight files."""
    return files_size_mb(weight_files(model_dir))
