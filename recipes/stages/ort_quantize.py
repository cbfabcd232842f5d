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

    ``embedding_bits: 4`` stores the embedding tables (every ``Gather`` of a constant table: words,
    positions, token types) in 4 bits with one float scale per ``embedding_block`` values, as ONNX
    Runtime's ``GatherBlockQuantized`` (``MatMulNBitsQuantizer``), and the rest in int8 as above:
    the word embedding is most of a small student's bytes. The file still loads through
    ``ORTModelForSequenceClassification`` and ``pipeline()``; the parity check holds it to the
    fp32 model like any int8 one.

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
    embedding_bits: Literal[8, 4] = Field(
        8, description="Bits per value of the embedding tables: 8 (int8, as every weight) or 4 (GatherBlockQuantized)."
    )
    embedding_block: Literal[16, 32, 64, 128] = Field(
        32, description="With embedding_bits 4: values per block that share one scale."
    )
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
    if spec.embedding_bits == 4:  # the tables get 4 bits afterwards (_embeddings_to_4_bits)
        qconfig.operators_to_quantize = [op for op in qconfig.operators_to_quantize if op != "Gather"]
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
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    from ..ml.onnxio import save_config_and_tokenizer

    skip = {"Gather"} if spec.embedding_bits == 4 else set()  # the tables get 4 bits afterwards
    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        per_channel=spec.per_channel,
        op_types_to_quantize=[op for op in IntegerOpsRegistry if op not in skip],
        # fused contrib outputs have no inferred type; treat unknown tensors as float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    save_config_and_tokenizer(ctx.inputs["input"], ctx.out_dir)
    return {"weight_type": "QInt8"}


def embeddings_to_4_bits(path: Path, block: int) -> int:
    """Rewrite every ``Gather`` of a constant float table in the model at ``path`` as ONNX Runtime's
    ``GatherBlockQuantized`` (symmetric int4, one scale per ``block`` values of a row); returns how
    many tables were converted."""
    import numpy as np
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    from onnxruntime.quantization.quant_utils import QuantFormat

    config = DefaultWeightOnlyQuantConfig(
        block_size=block,
        is_symmetric=True,
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=("Gather",),
        quant_axes=(("Gather", 1),),
    )
    quantizer = MatMulNBitsQuantizer(onnx.load(path), algo_config=config)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero block (a padding row) has scale 0
        quantizer.process()
    quantizer.model.save_model_to_file(str(path), use_external_data_format=False)
    return sum(node.op_type == "GatherBlockQuantized" for node in onnx.load(path).graph.node)


def _is_int8_op(op_type: str) -> bool:
    """QAttention, QLinearMatMul, (Dynamic)QuantizeLinear, DequantizeLinear, MatMulInteger, ..."""
    return op_type.startswith("Q") or "quant" in op_type.lower() or "Integer" in op_type


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="quantization",
    relation="quantized",
    phrase="int8-quantized with ONNX Runtime (embedding tables in {embedding_bits} bits)",
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
    recorded.update(
        engine=spec.engine, mode=spec.mode, per_channel=spec.per_channel, embedding_bits=spec.embedding_bits
    )
    if spec.embedding_bits == 4:
        recorded["embedding_tables_4_bit"] = embeddings_to_4_bits(target, spec.embedding_block)
    ctx.log.info("  quantized %s: %s", source.name, recorded)
    metrics, graph = conclude_stage(spec, ctx, QUANTIZED_FILE, source, dtype="int8", **recorded)
    int8_ops = {k: v for k, v in graph["ops"].items() if _is_int8_op(k.split(":")[-1])}
    return {**recorded, **metrics, "weight_mb_by_dtype": graph["weight_mb_by_dtype"], "quantized_ops": int8_ops}
