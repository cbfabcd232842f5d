"""The stage registry: every module of this package is a stage type, found, not listed.

A stage type is one module: a spec (``type: Literal["<type>"]``) and a ``run(spec, ctx)``
decorated with ``@register("<type>", Spec, libraries=..., publishing=..., accepts=..., makes=...,
join=...)`` (:func:`recipes.stages.base.register`), which declares everything the rest of the
project asks about the type: the libraries whose versions shape its output, what the card and
the push take from it, the model formats it takes and makes, the work another process can do on
it. Nothing outside its module names the type; adding one is adding its module here.

Stage types from other packages plug in the same way through the ``recipes.stages`` entry-point
group (``[project.entry-points."recipes.stages"] mytype = "mypkg.mystage"``): the named module is
imported and registers itself.

The modules are imported when the registry is first asked for (``from recipes.stages import
STAGE_TYPES``), not when the package is: shared code that stage modules import (e.g.
:mod:`recipes.ml.training`, which subclasses :class:`StageSpec`) can then import
:mod:`recipes.stages.base` without an import cycle.
"""

import importlib
import pkgutil
from importlib.metadata import entry_points

from .base import StageContext, StageSpec, register

#: Modules of this package that hold no stage type.
NOT_STAGES = {"base"}
#: The entry-point group through which other packages add stage types.
ENTRY_POINT_GROUP = "recipes.stages"

__all__ = ["STAGE_TYPES", "StageContext", "StageSpec", "register", "stage_modules"]


def stage_modules() -> list[str]:
    """The modules that define stage types: this package's, then the entry points'."""
    own = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if m.name not in NOT_STAGES]
    plugged = [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(own) + sorted(set(plugged) - set(own))


def __getattr__(name: str):
    if name == "STAGE_TYPES":
        from . import base

        for module in stage_modules():
            importlib.import_module(module)
        return base.STAGE_TYPES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
