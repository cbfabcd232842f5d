"""``quantize-dynamic``: PyTorch dynamic int8 quantization of every ``nn.Linear``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..ml.modelio import PYTORCH_DYNAMIC_INT8
from ..plan.bounds import Text
from .base import Publishing, StageContext, StageSpec, register


class QuantizeDynamicSpec(StageSpec):
    """Quantize ``input``'s Linear layers to int8 with ``torch.ao.quantization.quantize_dynamic``.

    Weights are stored int8; activations are quantized on the fly, so no calibration data
    is needed, and no dataset is read. The output folder keeps config + tokenizer and
    ``quantized_state_dict.pt``, which the project's loader rebuilds (PyTorch's dynamic int8
    kernels run on the CPU). The record counts the Linear layers quantized.

    .. code-block:: yaml

        stages:
          - name: quantize
            type: quantize-dynamic
            input: distill
    """

    type: Literal["quantize-dynamic"]
    input: Text = Field(description="Model to quantize: a key of `models` or an earlier stage.")
    keeps_layers: ClassVar[bool] = True  # its model has its input's layers (checked in recipes.plan.preflight)
    uses_dataset = False

    def refs(self) -> dict[str, str]:
        return {"input": self.input}

    def output_traits(self) -> dict[str, str]:
        return {"int8": "int8"}


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="quantization",
    relation="quantized",
    repo_dir="int8",
    usage="usage/pytorch-dynamic-int8.md.j2",
    phrase="PyTorch dynamic int8 quantization of every Linear layer",
)


@register(
    "quantize-dynamic",
    QuantizeDynamicSpec,
    libraries=("torch", "transformers"),
    publishing=PUBLISHING,
    makes=PYTORCH_DYNAMIC_INT8,
)
def run(spec: QuantizeDynamicSpec, ctx: StageContext) -> dict:
    import torch
    from transformers import AutoTokenizer

    from ..ml.modelio import QUANTIZED_STATE_FILE, auto_classifier, quantize_linear_dynamic
    from ..runfolder import write_format

    model = auto_classifier(ctx.inputs["input"])
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    quantized = quantize_linear_dynamic(model)
    torch.save(quantized.state_dict(), ctx.out_dir / QUANTIZED_STATE_FILE)
    quantized.config.save_pretrained(ctx.out_dir)
    AutoTokenizer.from_pretrained(ctx.inputs["input"]).save_pretrained(ctx.out_dir)
    write_format(ctx.out_dir, PYTORCH_DYNAMIC_INT8, [QUANTIZED_STATE_FILE], dtype="qint8", modules=["Linear"])
    return {"quantized_linear_layers": n_linear}
