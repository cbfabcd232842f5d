"""Declarative compression recipes for transformer text classifiers, run and benchmarked.

Python (the command line ``python -m recipes`` is a thin layer over the same functions)::

    import recipes

    recipes.catalog()                                              # name -> one line each
    plan = recipes.load("kd-quant", {"dataset.max_samples.train": 300})   # validate, run nothing
    result = recipes.run(plan, output_dir="outputs")               # or recipes.run("kd-quant", {...})
    [(s.name, s.status, s.wall_s) for s in result.stages]          # [("quantize", "ran", 2.1), ...]
    result.models["quantize"]                                      # the model's folder
    result.to_dataframe()                                          # the benchmark, one row per model
    result.plot()                                                  # accuracy vs latency, inline in Jupyter
    recipes.bench_catalog(["kd-onnx-quant"])                       # the catalog side by side (make bench)
    recipes.measure_models({"m": folder}, {"id": "clinc_oos", "config": "plus"})   # rows as a benchmark has them

Errors are the classes of :mod:`recipes.errors` (all :class:`RecipeError`), each with a
``message`` that says what to fix. See :mod:`recipes.api` for every parameter.

The names are imported on first use, so ``import recipes`` (or any ``recipes`` module) stays
light: no torch, transformers or pandas until a run needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: Public name -> the module that defines it.
_EXPORTS = {
    "catalog": "recipes.api",
    "load": "recipes.api",
    "run": "recipes.api",
    "bench_catalog": "recipes.api",
    "BenchResult": "recipes.bench.report",
    "measure_models": "recipes.api",
    "machine_info": "recipes.measure.environment",
    "accuracy_latency_figure": "recipes.measure.plot",
    "kept_figure": "recipes.ml.pruning",
    "RunResult": "recipes.results",
    "StageSummary": "recipes.results",
    "BENCHMARK_FIELDS": "recipes.results",
    "Plan": "recipes.plan.planning",
    "RecipeError": "recipes.errors",
    "RecipeNotFoundError": "recipes.errors",
    "RecipeValidationError": "recipes.errors",
    "ModelSourceError": "recipes.errors",
    "DatasetError": "recipes.errors",
    "StageFailedError": "recipes.errors",
    "ParityError": "recipes.errors",
    "RunFolderError": "recipes.errors",
    "RunFolderBusyError": "recipes.errors",
    "PublishError": "recipes.errors",
}

__all__ = [
    "catalog",
    "load",
    "run",
    "bench_catalog",
    "measure_models",
    "machine_info",
    "accuracy_latency_figure",
    "kept_figure",
    "BenchResult",
    "RunResult",
    "StageSummary",
    "BENCHMARK_FIELDS",
    "Plan",
    "RecipeError",
    "RecipeNotFoundError",
    "RecipeValidationError",
    "ModelSourceError",
    "DatasetError",
    "StageFailedError",
    "ParityError",
    "RunFolderError",
    "RunFolderBusyError",
    "PublishError",
]

if TYPE_CHECKING:
    from recipes.api import bench_catalog, catalog, load, measure_models, run
    from recipes.bench.report import BenchResult
    from recipes.errors import (
        DatasetError,
        ModelSourceError,
        ParityError,
        PublishError,
        RecipeError,
        RecipeNotFoundError,
        RecipeValidationError,
        RunFolderBusyError,
        RunFolderError,
        StageFailedError,
    )
    from recipes.measure.environment import machine_info
    from recipes.measure.plot import accuracy_latency_figure
    from recipes.ml.pruning import kept_figure
    from recipes.plan.planning import Plan
    from recipes.results import BENCHMARK_FIELDS, RunResult, StageSummary


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'recipes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
