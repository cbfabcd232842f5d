"""``ort-quantize``: int8 quantization of an ONNX graph, dynamic or static (calibrated).

Two engines, because neither covers every graph (optimum 2.1 / optimum-onnx 0.1 / ORT 1.32):

- ``optimum`` (default): ``ORTQuantizer`` + ``AutoQuantizationConfig.<preset>``; dynamic or
  static. Its shape inference cannot type the outputs of ONNX Runtime's fused contrib operators
  (Attention, SkipLayerNormalization, BiasGelu, FusedGemm), so it fails on the output of
  ``ort-optimize`` with ``level`` 2/99 or ``transformers_fusions: true``. Quantize the export
  instead: ONNX Runtime fuses at session load anyway, so nothing is lost.
- ``onnxruntime``: ``onnxruntime.quantization.quantize_dynamic`` with
  ``DefaultTensorType: FLOAT``, which quantizes fused graphs too (fused Attention becomes
  QAttention). Dynamic only, QInt8 weights.

:meth:`OrtQuantizeSpec.source_problem` refuses, at ``recipes check``, the inputs that cannot work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..ml.modelio import ONNX
from ..plan.bounds import Fraction, SampleCount
from .base import ONNX_LIBRARIES, Publishing, StageContext, StageSpec, register
from .onnx_export import OnnxStageSpec

Preset = Literal["avx512_vnni", "avx512", "avx2", "arm64"]
#: Operators static mode keeps in float (see ``_quantize_optimum``).
STATIC_FLOAT_OPS = ("Where",)


class OrtQuantizeSpec(OnnxStageSpec):
    """Quantize ``input`` (an ONNX stage) to int8 into ``model_quantized.onnx``.

    ``mode: dynamic`` quantizes weights ahead and activations on the fly; ``mode: static``
    calibrates activation ranges on ``calibration_samples`` train rows (``minmax`` or
    ``percentiles``), the attention mask's Where left in float. Two engines, because neither
    covers every graph:

    - ``optimum`` (default): optimum's ``ORTQuantizer`` with the ``AutoQuantizationConfig``
      ``preset``, which defaults to the best one for this machine's CPU flags (recorded);
      dynamic or static. It reads only unfused graphs: its shape inference fails on ONNX
      Runtime's fused operators (Attention, SkipLayerNormalization, BiasGelu, ...).
    - ``onnxruntime``: ``onnxruntime.quantization.quantize_dynamic``, QInt8 weights, which
      quantizes fused graphs too (fused Attention becomes QAttention); dynamic only.

    Quantize/optimize order: quantize the ``export-onnx`` output (ONNX Runtime fuses at session
    load anyway, so nothing is lost); to quantize a graph fused by ``ort-optimize`` (``level``
    2/99 or ``transformers_fusions: true``) use ``engine: onnxruntime``. ``recipes check``
    refuses an int8 or float16 input and the engine/input combinations that cannot work, and
    says which fix applies. The record holds the settings, the parity, the weight MB per dtype
    and the int8 operators.

    .. code-block:: yaml

        stages:
          - name: quantize
            type: ort-quantize
            input: export          # the fp32 export; see the order rule above for ort-optimize
            mode: dynamic          # or static, with calibration: minmax | percentiles
            engine: optimum        # or onnxruntime (dynamic only; quantizes fused graphs)
            per_channel: false
    """

    type: Literal["ort-quantize"]
    mode: Literal["dynamic", "static"] = Field(
        "dynamic", description="dynamic: activations quantized at run time; static: ranges calibrated ahead."
    )
    engine: Literal["optimum", "onnxruntime"] = Field(
        "optimum", description="optimum (dynamic or static, unfused graphs) or onnxruntime (dynamic, fused too)."
    )
    preset: Preset | None = Field(None, description="AutoQuantizationConfig preset; null: chosen from the CPU flags.")
    per_channel: bool = Field(False, description="Per-channel (per-row) weight scales.")
    calibration: Literal["minmax", "percentiles"] = Field("minmax", description="Static mode: how ranges are set.")
    calibration_samples: SampleCount = Field(128, description="Static mode: train rows used for calibration.")
    min_agreement: Fraction = Field(0.95, description="Least share of eval rows with the fp32 argmax.")

    def output_traits(self) -> dict[str, str]:
        return {"int8": "int8"}

    def source_problem(self, role: str, source: StageSpec) -> str | None:
        """Quantizing twice, an fp16 graph, or (engine optimum) a graph with fused contrib operators."""
        traits = source.output_traits()
        if "int8" in traits:
            return "the input is already int8; quantize the fp32 ONNX model instead"
        if "fp16" in traits:
            return f"the input is float16; int8 quantization needs the fp32 graph (set fp16: false on {source.name!r})"
        if "contrib-ops" in traits and self.engine == "optimum":
            return (
                "engine 'optimum' cannot quantize a graph with ONNX Runtime fused operators, which "
                f"{source.name!r} makes ({traits['contrib-ops']}); optimum's shape inference "
                "fails on them. Fix: take the export-onnx output as input (ONNX Runtime fuses at session load "
                f"anyway), or set engine: onnxruntime (dynamic only), or set level: 1 and transformers_fusions: "
                f"false on {source.name!r}"
            )
        return None

    @model_validator(mode="after")
    def _engine_supports_settings(self):
        if self.engine == "onnxruntime" and self.mode == "static":
            raise ValueError(
                "engine 'onnxruntime' quantizes dynamically only; for mode static use engine 'optimum' "
                "on an unfused graph (the export-onnx output)"
            )
        if self.engine == "onnxruntime" and self.preset is not None:
            raise ValueError("preset applies to engine 'optimum' only; remove it or set engine: optimum")
        return self


def cpu_preset() -> str:
    """The ``AutoQuantizationConfig`` preset for this machine's CPU, from py-cpuinfo's flags."""
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    flags = set(info.get("flags", []))
    if str(info.get("arch", "")).startswith("ARM"):
        return "arm64"
    if flags & {"avx512_vnni", "avx512vnni"}:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    raise ValueError(
        f"No quantization preset fits this CPU ({info.get('brand_raw')}: no AVX2/AVX-512/ARM64); "
        "set preset: in the stage to quantize for another machine."
    )


def _calibration_dataset(spec: OrtQuantizeSpec, ctx: StageContext, quantizer):
    from transformers import AutoTokenizer

    train = ctx.data.split("train").shuffle(seed=ctx.seed)
    rows = train.select(range(min(spec.calibration_samples, len(train))))
    tokenizer = AutoTokenizer.from_pretrained(ctx.inputs["input"])
    # one batch, padded to its longest row: histogram calibrators stack rows, so lengths must match
    tokenized = rows.map(
        lambda b: tokenizer(b["text"], padding="longest", truncation=True, max_length=128),
        batched=True,
        batch_size=None,
    )
    return quantizer.clean_calibration_dataset(tokenized)  # keeps the graph's inputs only


def _quantize_optimum(spec: OrtQuantizeSpec, ctx: StageContext, source: Path) -> dict:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig, AutoQuantizationConfig

    from ..ml.onnxio import graph_summary

    fused = graph_summary(source)["contrib_ops"]
    if fused:  # a graph from another recipe; the recipe check catches this within one recipe
        raise ValueError(
            f"{source.name} holds ONNX Runtime fused operators {fused}, which optimum's ORTQuantizer "
            "cannot quantize. Quantize the unfused export-onnx output, or set engine: onnxruntime."
        )
    preset = spec.preset or cpu_preset()
    static = spec.mode == "static"
    qconfig = getattr(AutoQuantizationConfig, preset)(is_static=static, per_channel=spec.per_channel)
    quantizer = ORTQuantizer.from_pretrained(source.parent, file_name=source.name)
    ranges, recorded = None, {"preset": preset}
    if static:
        # The attention mask's Where holds float-min constants: no int8 range fits them, and
        # histogram calibration (percentiles) cannot even bin them. Leave that op in float.
        qconfig.operators_to_quantize = [op for op in qconfig.operators_to_quantize if op not in STATIC_FLOAT_OPS]
        dataset = _calibration_dataset(spec, ctx, quantizer)
        calibration = getattr(AutoCalibrationConfig, spec.calibration)(dataset)
        with tempfile.TemporaryDirectory() as tmp:  # the augmented model is scratch
            ranges = quantizer.fit(
                dataset=dataset,
                calibration_config=calibration,
                onnx_augmented_model_name=Path(tmp) / "augmented_model.onnx",
                operators_to_quantize=qconfig.operators_to_quantize,
            )
        recorded.update(
            calibration=spec.calibration,
            calibration_rows=len(dataset),
            quant_format=qconfig.format.name,
            float_ops=list(STATIC_FLOAT_OPS),
        )
    quantizer.quantize(qconfig, ctx.out_dir, calibration_tensors_range=ranges)  # + config, tokenizer, ort_config
    return recorded


def _quantize_onnxruntime(spec: OrtQuantizeSpec, ctx: StageContext, source: Path, target: Path) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ..ml.onnxio import save_config_and_tokenizer

    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        per_channel=spec.per_channel,
        # fused contrib outputs have no inferred type; treat unknown tensors as float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    save_config_and_tokenizer(ctx.inputs["input"], ctx.out_dir)
    return {"weight_type": "QInt8"}


def _is_int8_op(op_type: str) -> bool:
    """QAttention, QLinearMatMul, (Dynamic)QuantizeLinear, DequantizeLinear, MatMulInteger, ..."""
    return op_type.startswith("Q") or "quant" in op_type.lower() or "Integer" in op_type


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="quantization",
    relation="quantized",
    phrase="int8-quantized with ONNX Runtime",
    repo_dir="onnx",
    usage="usage/onnx.md.j2",
)


@register(
    "ort-quantize", OrtQuantizeSpec, libraries=ONNX_LIBRARIES, publishing=PUBLISHING, accepts=(ONNX,), makes=ONNX
)
def run(spec: OrtQuantizeSpec, ctx: StageContext) -> dict:
    from ..ml.modelio import onnx_path
    from ..ml.onnxio import QUANTIZED_FILE, conclude_stage

    source = onnx_path(ctx.inputs["input"])
    target = ctx.out_dir / QUANTIZED_FILE
    if spec.engine == "optimum":
        recorded = _quantize_optimum(spec, ctx, source)
        (ctx.out_dir / f"{source.stem}_quantized.onnx").rename(target)
    else:
        recorded = _quantize_onnxruntime(spec, ctx, source, target)
    recorded.update(engine=spec.engine, mode=spec.mode, per_channel=spec.per_channel)
    ctx.log.info("  quantized %s: %s", source.name, recorded)
    metrics, graph = conclude_stage(spec, ctx, QUANTIZED_FILE, source, dtype="int8", **recorded)
    int8_ops = {k: v for k, v in graph["ops"].items() if _is_int8_op(k.split(":")[-1])}
    return {**recorded, **metrics, "weight_mb_by_dtype": graph["weight_mb_by_dtype"], "quantized_ops": int8_ops}
