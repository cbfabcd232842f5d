"""The stage registry. Each module registers its ``type`` explicitly with ``@register``.

To add a stage type: write ``stages/<type>.py`` with a spec (``type: Literal["<type>"]``) and
a ``run(spec, ctx)`` decorated with ``@register("<type>", Spec, libraries=..., publishing=...)``
(the libraries whose versions shape its output; what the card and the push take from it, a
:class:`~recipes.stages.base.Publishing`), then list the module in :data:`STAGE_MODULES`.

The modules are imported when the registry is first asked for (``from recipes.stages import
STAGE_TYPES``), not when the package is: shared code that stage modules import (e.g.
:mod:`recipes.ml.training`, which subclasses :class:`StageSpec`) can then import
:mod:`recipes.stages.base` without an import cycle.
"""

import importlib

from .base import StageContext, StageSpec, register

STAGE_MODULES = (
    "benchmark",
    "distill",
    "finetune",
    "quantize_dynamic",
    "onnx_export",
    "ort_optimize",
    "ort_quantize",
    "search",
    "calibrate_oos",
    "prune_vocab",
    "prune_structured",
    "prune_magnitude",
)

__all__ = ["STAGE_TYPES", "STAGE_MODULES", "StageContext", "StageSpec", "register"]


def __getattr__(name: str):
    if name == "STAGE_TYPES":
        from . import base

        for module in STAGE_MODULES:
            importlib.import_module(f"{__name__}.{module}")
        return base.STAGE_TYPES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
