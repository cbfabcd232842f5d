"""The ONNX Runtime side of :mod:`recipes.ml.modelio`: the ``onnx`` loader and the helpers the
``export-onnx``, ``ort-optimize`` and ``ort-quantize`` stages share.

An ONNX stage folder holds one ``.onnx`` file, config + tokenizer files, and a
``model_format.json`` with ``format: onnx`` and ``file_name`` (which ``.onnx`` file to load)::

    model.onnx | model_optimized.onnx | model_quantized.onnx
    config.json  tokenizer.json  tokenizer_config.json  vocab.txt  special_tokens_map.json
    model_format.json   (+ ort_config.json from ort-optimize / ort-quantize)

Publishing convention (the ONNX stage types declare ``repo_dir="onnx"`` in their
:class:`~recipes.stages.base.Publishing`; ``hubtools push`` places models by it, and
:func:`assemble_repo_folder` builds the same layout from folders given by hand): the repo
root keeps the PyTorch weights (safetensors) + config + tokenizer, so
``pipeline("text-classification", model=repo_id)`` works with plain transformers; the ONNX
variants go in ``onnx/`` under fixed names::

    model.safetensors  config.json  tokenizer.json  tokenizer_config.json  vocab.txt  ...
    onnx/model.onnx              fp32 export (export-onnx)
    onnx/model_optimized.onnx    offline graph optimization (ort-optimize)
    onnx/model_quantized.onnx    int8 (ort-quantize)

Each loads with ``ORTModelForSequenceClassification.from_pretrained(repo_id, subfolder="onnx",
file_name="model_quantized.onnx")``; optimum takes ``config.json`` from the root when the
subfolder has none, and the tokenizer comes from the root (``AutoTokenizer.from_pretrained(repo_id)``).
"""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParityError
from ..runfolder import FORMAT_FILE, PYTORCH, read_format, write_format
from .modelio import ONNX, know_own_architectures, load_classifier, onnx_path

EXPORTED_FILE = "model.onnx"
OPTIMIZED_FILE = "model_optimized.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
#: Where the ONNX variants live in a published repo (see the module docstring; the ONNX
#: stage types declare the same folder).
REPO_ONNX_DIR = "onnx"
#: Operator domain of ONNX Runtime's fused operators (Attention, SkipLayerNormalization, ...).
CONTRIB_DOMAIN = "com.microsoft"


# --- the onnx format -------------------------------------------------------------------------


def write_onnx_format(model_dir: Path, file_name: str, **extra: Any) -> None:
    """Record ``file_name`` as the folder's model (its size is that file's bytes)."""
    write_format(model_dir, ONNX, [file_name], file_name=file_name, **extra)


def save_config_and_tokenizer(src: Path, dst: Path) -> None:
    """Copy what a loader needs besides the weights: config.json and the tokenizer files."""
    from transformers import AutoConfig, AutoTokenizer

    know_own_architectures()
    AutoConfig.from_pretrained(src).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)


def torch_export(src: Path, dst: Path, opset: int | None) -> None:
    """``torch.onnx.export`` of the PyTorch classifier in ``src`` to ``dst/model.onnx`` (inputs
    ``input_ids`` and ``attention_mask``, dynamic batch and sequence axes, output ``logits``), with
    its config and tokenizer: the layout optimum's exporter writes, for an architecture it has no
    export config for (this project's static student)."""
    import torch

    from .modelio import auto_classifier

    model = auto_classifier(src).eval()
    save_config_and_tokenizer(src, dst)
    names = ["input_ids", "attention_mask"]
    axes = {name: {0: "batch_size", 1: "sequence_length"} for name in names}
    sample = (torch.tensor([[1, 2, 3], [1, 2, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]]))
    with torch.inference_mode():
        torch.onnx.export(
            model,
            sample,
            str(Path(dst) / EXPORTED_FILE),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch_size"}},
            opset_version=opset or 17,
            dynamo=False,
        )


# --- what a graph contains ---------------------------------------------------------------------


def graph_summary(path: Path) -> dict:
    """Opset, node counts by operator, fused (contrib) operators, fp32 vs int8 weight bytes."""
    import onnx

    model = onnx.load(str(path))
    ops = collections.Counter(f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in model.graph.node)
    weight_bytes = collections.Counter()
    for init in model.graph.initializer:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
        weight_bytes[np.dtype(dtype).name] += int(np.prod(init.dims, dtype=np.int64)) * np.dtype(dtype).itemsize
    return {
        "file": path.name,
        "size_mb": path.stat().st_size / 2**20,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "nodes": sum(ops.values()),
        "ops": dict(sorted(ops.items())),
        "contrib_ops": sorted(op.split(":", 1)[1] for op in ops if op.startswith(CONTRIB_DOMAIN + ":")),
        "weight_mb_by_dtype": {k: v / 2**20 for k, v in sorted(weight_bytes.items())},
        "inputs": {
            i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
        },
    }


# --- parity against the source model -----------------------------------------------------------


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> dict:
    return {
        "max_abs_diff": float(np.abs(reference - candidate).max()),
        "argmax_agreement": float((reference.argmax(-1) == candidate.argmax(-1)).mean()),
    }


def parity_check(spec, ctx, reference_dir: Path, candidate_dir: Path, against: str) -> dict:
    """Logits of ``candidate_dir`` vs ``reference_dir`` on ``spec.parity_samples`` eval rows.

    Fails the stage past ``spec.atol`` (when set) or below ``spec.min_agreement``; the
    returned metrics go into the stage record either way it is read.
    """
    eval_split = ctx.data.split("eval")
    texts = list(eval_split.select(range(min(spec.parity_samples, len(eval_split))))["text"])
    reference = load_classifier(reference_dir, ctx.threads).logits(texts)
    candidate = load_classifier(candidate_dir, ctx.threads).logits(texts)
    result = {"against": against, "rows": len(texts), **compare_logits(reference, candidate)}
    ctx.log.info(
        "  parity vs %s on %d eval rows: max |diff| %.3g, argmax agreement %.4f",
        against,
        len(texts),
        result["max_abs_diff"],
        result["argmax_agreement"],
    )
    problems = []
    if spec.atol is not None and result["max_abs_diff"] > spec.atol:
        problems.append(f"max |logit diff| {result['max_abs_diff']:.3g} > atol {spec.atol:g}")
    if result["argmax_agreement"] < spec.min_agreement:
        problems.append(f"argmax agreement {result['argmax_agreement']:.4f} < min_agreement {spec.min_agreement:g}")
    if problems:
        raise ParityError(
            f"{' and '.join(problems)} against {against} on {len(texts)} eval rows. "
            f"If the drift is expected, relax atol / min_agreement on stage {spec.name!r}; otherwise "
            "check the opset (export-onnx) or the options of this stage."
        )
    return result


def conclude_stage(spec, ctx, file_name: str, source: Path | None = None, **format_extra) -> tuple[dict, dict]:
    """Finish an ONNX stage: record ``file_name`` in model_format.json, check parity against the
    stage input (``source``, the input's ``.onnx`` file; None for a PyTorch input).

    Returns the stage metrics (parity, opset, size, nodes, and the input's size and nodes when
    ``source`` is given) and the output graph's :func:`graph_summary`.
    """
    graph = graph_summary(ctx.out_dir / file_name)
    made_from = {"source": source.name} if source is not None else {}
    write_onnx_format(ctx.out_dir, file_name, opset=graph["opset"], **made_from, **format_extra)
    against = f"{spec.input} ({source.name if source else 'PyTorch'})"
    metrics = {
        "parity": parity_check(spec, ctx, ctx.inputs["input"], ctx.out_dir, against),
        "opset": graph["opset"],
        "size_mb": graph["size_mb"],
        "nodes": graph["nodes"],
    }
    if source is not None:
        before = graph_summary(source)
        metrics.update(size_mb_before=before["size_mb"], nodes_before=before["nodes"])
    return metrics, graph


# --- publishing ----------------------------------------------------------------------------------


def assemble_repo_folder(pytorch_dir: Path, onnx_dirs: list[Path], out_dir: Path) -> Path:
    """Lay out a Hub repo folder: PyTorch model at the root, ONNX variants under ``onnx/``.

    ``pytorch_dir`` is a PyTorch fp32 stage folder (finetune, distill); each of ``onnx_dirs``
    is an ONNX stage folder whose ``.onnx`` file is copied to ``onnx/<file_name>``. Project
    bookkeeping (``model_format.json``, ``.stage.json``, trainer folders) stays behind.
    """
    pytorch_dir, out_dir = Path(pytorch_dir), Path(out_dir)
    if read_format(pytorch_dir).format != PYTORCH:
        raise ValueError(
            f"{pytorch_dir} is a {read_format(pytorch_dir).format!r} model; the repo root needs PyTorch fp32 "
            "weights so plain transformers can load it (take the finetune or distill stage)."
        )
    (out_dir / REPO_ONNX_DIR).mkdir(parents=True, exist_ok=True)
    for item in pytorch_dir.iterdir():
        if item.is_file() and item.name != FORMAT_FILE and not item.name.startswith("."):
            shutil.copy2(item, out_dir / item.name)
    placed: dict[str, Path] = {}
    for onnx_dir in map(Path, onnx_dirs):
        source = onnx_path(onnx_dir)
        if source.name in placed:
            raise ValueError(
                f"{onnx_dir} and {placed[source.name]} both provide {REPO_ONNX_DIR}/{source.name}; "
                "a repo holds one model per variant name."
            )
        shutil.copy2(source, out_dir / REPO_ONNX_DIR / source.name)
        placed[source.name] = onnx_dir
    (out_dir / REPO_ONNX_DIR / "variants.json").write_text(
        json.dumps({name: read_format(d).extra for name, d in placed.items()}, indent=2, default=str) + "\n"
    )
    return out_dir
