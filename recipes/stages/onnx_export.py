"""``export-onnx``: export a PyTorch classifier to ONNX with optimum, then check parity.

Also home of :class:`OnnxStageSpec`, the fields ``ort-optimize`` and ``ort-quantize`` share.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..ml.modelio import ONNX
from ..plan.bounds import FiniteFloat, Fraction, Opset, SampleCount, Text
from .base import ONNX_LIBRARIES, Publishing, StageContext, StageSpec, register


class OnnxStageSpec(StageSpec):
    """One input model; the output is checked against it on the first ``parity_samples`` eval rows.

    The parity check records the max absolute logit difference and the argmax agreement in the
    stage record (``.stage.json``), and fails the stage, with the numbers, when the difference
    exceeds ``atol`` (null: only recorded) or the agreement falls below ``min_agreement``. The
    record also holds the opset, the graph's size and node count (and its input's).
    """

    input: Text = Field(description="Model to convert: a key of `models` or an earlier stage.")
    keeps_layers: ClassVar[bool] = True  # its model has its input's layers (checked in recipes.plan.preflight)
    parity_samples: SampleCount = Field(256, description="Eval rows the output is compared on.")
    atol: FiniteFloat | None = Field(None, gt=0, description="Max |logit difference| allowed; null records it only.")
    min_agreement: Fraction = Field(0.99, description="Least share of eval rows with the same argmax.")

    def refs(self) -> dict[str, str]:
        return {"input": self.input}


class ExportOnnxSpec(OnnxStageSpec):
    """Export ``input`` (PyTorch fp32) to ``model.onnx`` with dynamic batch and sequence axes.

    Uses ``optimum.exporters.onnx.main_export`` (task text-classification); the folder keeps
    config + tokenizer. Parity against the PyTorch model is part of the stage.

    .. code-block:: yaml

        stages:
          - name: export
            type: export-onnx
            input: distill
            opset: 18            # default: optimum's choice for the architecture
            atol: 1.0e-3
            parity_samples: 256
    """

    type: Literal["export-onnx"]
    opset: Opset | None = Field(None, description="ONNX opset; null: optimum's default for the architecture.")
    atol: FiniteFloat | None = Field(1e-3, gt=0, description="Max |logit difference| vs PyTorch; null: record only.")


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(tag="onnx", phrase="exported to ONNX", repo_dir="onnx", usage="usage/onnx.md.j2")


@register("export-onnx", ExportOnnxSpec, libraries=ONNX_LIBRARIES, publishing=PUBLISHING, makes=ONNX)
def run(spec: ExportOnnxSpec, ctx: StageContext) -> dict:
    from optimum.exporters.onnx import main_export

    from ..ml.onnxio import EXPORTED_FILE, conclude_stage

    source = ctx.inputs["input"]
    main_export(
        str(source),
        ctx.out_dir,
        task="text-classification",
        opset=spec.opset,
        do_validation=False,  # our own parity check below, on real eval rows
        library_name="transformers",
    )
    metrics, graph = conclude_stage(spec, ctx, EXPORTED_FILE, dtype="float32")
    return {**metrics, "inputs": graph["inputs"]}
