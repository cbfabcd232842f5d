"""Facts about where a result was made: library versions, CPU, threads (for run.json and cards)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

LIBRARIES = (
    "torch",
    "transformers",
    "datasets",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "accelerate",
    "huggingface_hub",
    "optuna",
)


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def cpu_model() -> str:
    import cpuinfo

    return cpuinfo.get_cpu_info().get("brand_raw") or platform.processor()


def machine_info(threads: int | None = None) -> dict:
    """CPU, core count, the thread budget used, platform and library versions."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
    }
