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
    config + tokenizer. An architecture optimum has no export config for (this project's static
    student) is exported by ``torch.onnx.export`` of its forward instead (``input_ids``,
    ``attention_mask`` -> ``logits``, the same layout). Parity against the PyTorch model is part
    of the stage.

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

    from ..ml.onnxio import EXPORTED_FILE, conclude_stage, torch_export

    source = ctx.inputs["input"]
    exporter = "optimum" if _optimum_exports(source) else "torch.onnx"
    if exporter == "optimum":
        main_export(
            str(source),
            ctx.out_dir,
            task="text-classification",
            opset=spec.opset,
            do_validation=False,  # our own parity check below, on real eval rows
            library_name="transformers",
        )
    else:
        ctx.log.info("optimum has no ONNX export config for this architecture: torch.onnx.export of its forward")
        torch_export(source, ctx.out_dir, spec.opset)
    metrics, graph = conclude_stage(spec, ctx, EXPORTED_FILE, dtype="float32")
    return {**metrics, "inputs": graph["inputs"], "exporter": exporter}


def _optimum_exports(model_dir) -> bool:
    """Whether optimum's ONNX exporter knows the architecture of the model in ``model_dir``."""
    import json
    from pathlib import Path

    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX export configs)
    from optimum.exporters.tasks import TasksManager

    model_type = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type", "")
    try:
        TasksManager.get_supported_tasks_for_model_type(model_type, exporter="onnx", library_name="transformers")
    except KeyError:
        return False
    return True
