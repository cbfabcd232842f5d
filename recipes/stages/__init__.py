"""The stage registry. Each module registers its ``type`` explicitly with ``@register``.

To add a stage type: write ``stages/<type>.py`` with a spec (``type: Literal["<type>"]``)
and a ``run(spec, ctx)`` decorated with ``@register("<type>", Spec)``, then import it here.
"""

from . import benchmark, distill, finetune, quantize_dynamic  # noqa: F401  (registration)
from . import onnx_export, ort_optimize, ort_quantize  # noqa: F401  (registration)
from . import search  # noqa: F401  (registration)
from .base import STAGE_TYPES, StageContext, StageSpec, register

__all__ = ["STAGE_TYPES", "StageContext", "StageSpec", "register"]
