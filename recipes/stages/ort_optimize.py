"""``ort-optimize``: offline ONNX Runtime graph optimization with optimum's ``ORTOptimizer``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..ml.modelio import ONNX
from ..plan.bounds import NotBool
from .base import ONNX_LIBRARIES, Publishing, StageContext, register
from .onnx_export import OnnxStageSpec

#: Spec fields passed to ``optimum.onnxruntime.OptimizationConfig`` under the same name.
FUSION_OPTIONS = (
    "disable_gelu_fusion",
    "disable_layer_norm_fusion",
    "disable_attention_fusion",
    "disable_skip_layer_norm_fusion",
    "disable_bias_skip_layer_norm_fusion",
    "disable_bias_gelu_fusion",
    "disable_embed_layer_norm_fusion",
    "enable_gelu_approximation",
)


class OrtOptimizeSpec(OnnxStageSpec):
    """Optimize ``input`` (an ONNX stage) into ``model_optimized.onnx``; ``ort_config.json`` records how.

    ``level`` is ONNX Runtime's graph optimization level (1 basic, 2 extended fusions,
    99 all incl. layout, hardware-specific). ``transformers_fusions`` adds the transformer
    optimizer's fusions (Attention, SkipLayerNormalization, BiasGelu); the ``disable_*`` /
    ``enable_*`` fields are ``OptimizationConfig``'s, same names and defaults.

    ONNX Runtime already applies these fusions when it loads a session, so expect little
    latency change on CPU; the stage records what it fused and the node counts.

    Quantize/optimize order: a graph with fused (``com.microsoft``) operators (``level`` 2/99 or
    ``transformers_fusions: true``) can only be int8-quantized by ``ort-quantize`` with
    ``engine: onnxruntime`` (dynamic only); quantize the export instead, or set ``level: 1`` and
    ``transformers_fusions: false``. ``recipes check`` refuses the combinations that cannot work.

    .. code-block:: yaml

        stages:
          - name: optimize
            type: ort-optimize
            input: export
            level: 2
            transformers_fusions: true
    """

    type: Literal["ort-optimize"]
    level: Annotated[Literal[1, 2, 99], NotBool] = Field(2, description="ORT graph optimization level: 1, 2 or 99.")
    transformers_fusions: bool = Field(True, description="Run the transformer-specific fusions too.")
    fp16: bool = Field(False, description="Convert weights to float16 (GPU inference; slower or unsupported on CPU).")
    disable_gelu_fusion: bool = Field(False, description="Do not fuse the Gelu subgraph into one Gelu.")
    disable_layer_norm_fusion: bool = Field(False, description="Do not fuse LayerNormalization subgraphs.")
    disable_attention_fusion: bool = Field(False, description="Do not fuse self-attention into Attention.")
    disable_skip_layer_norm_fusion: bool = Field(
        False, description="Do not fuse the residual Add + LayerNorm into SkipLayerNormalization."
    )
    disable_bias_skip_layer_norm_fusion: bool = Field(
        False, description="Do not fold the bias Add into SkipLayerNormalization."
    )
    disable_bias_gelu_fusion: bool = Field(False, description="Do not fuse the bias Add + Gelu into BiasGelu.")
    disable_embed_layer_norm_fusion: bool = Field(
        True, description="Do not fuse the embeddings + LayerNorm into EmbedLayerNormalization (which defeats int8)."
    )
    enable_gelu_approximation: bool = Field(False, description="Gelu -> FastGelu; changes logits slightly.")

    @property
    def fuses_contrib_ops(self) -> bool:
        """Whether the output may hold ONNX Runtime contrib (``com.microsoft``) operators."""
        return self.level >= 2 or self.transformers_fusions

    def output_traits(self) -> dict[str, str]:
        traits = {"fp16": "fp16: true"} if self.fp16 else {}
        if self.fuses_contrib_ops:
            traits["contrib-ops"] = f"level {self.level}" if self.level >= 2 else "transformers_fusions: true"
        return traits


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="onnx",
    phrase="graph-optimized offline with ONNX Runtime",
    repo_dir="onnx",
    usage="usage/onnx.md.j2",
)


@register(
    "ort-optimize", OrtOptimizeSpec, libraries=ONNX_LIBRARIES, publishing=PUBLISHING, accepts=(ONNX,), makes=ONNX
)
def run(spec: OrtOptimizeSpec, ctx: StageContext) -> dict:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    from ..ml.modelio import onnx_path
    from ..ml.onnxio import OPTIMIZED_FILE, conclude_stage

    source = onnx_path(ctx.inputs["input"])
    config = OptimizationConfig(
        optimization_level=spec.level,
        enable_transformers_specific_optimizations=spec.transformers_fusions,
        optimize_for_gpu=False,
        fp16=spec.fp16,
        **{name: getattr(spec, name) for name in FUSION_OPTIONS},
    )
    # writes <stem>_optimized.onnx, config, tokenizer and ort_config.json
    ORTOptimizer.from_pretrained(source.parent, file_names=[source.name]).optimize(config, ctx.out_dir)
    written = ctx.out_dir / f"{source.stem}_optimized.onnx"
    if written.name != OPTIMIZED_FILE:
        written.rename(ctx.out_dir / OPTIMIZED_FILE)
    metrics, graph = conclude_stage(
        spec,
        ctx,
        OPTIMIZED_FILE,
        source,
        dtype="float16" if spec.fp16 else "float32",
        level=spec.level,
        transformers_fusions=spec.transformers_fusions,
    )
    return {**metrics, "fused_ops": graph["contrib_ops"], "ops": graph["ops"]}
