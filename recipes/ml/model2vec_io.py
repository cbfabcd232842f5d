"""The ``model2vec`` model format: a static classifier saved as model2vec's ``StaticModelPipeline``.

What a model2vec user loads with ``StaticModelPipeline.from_pretrained(folder)`` (model2vec
0.9's layout, numpy only at inference)::

    model.safetensors   "embeddings": the token table (float32, float16 or int8); with int8,
                        "weights": one float32 scale per token id, so row * scale is the
                        dequantized row (model2vec multiplies each looked-up row by its weight)
    head.safetensors    "head.0.weight", "head.0.bias": the linear head, one row per label id
    config.json         model2vec's config; ``head_config`` names the classes (the label names)
    tokenizer.json      the tokenizer (model2vec adds no special tokens and drops [UNK])

A query is tokenized, its rows averaged, the head applied: what the project's static student
(:mod:`.static_model`) computes when it pools the text's tokens only (``distill-static``
``special_tokens: false``). :func:`save_static_pipeline` writes the folder from a table and a
head; the loader registered here serves it the model2vec way (``pipeline.predict``), with the
logits of the head for the accuracy pass. Importing this module registers the loader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runfolder import write_format
from .modelio import Classifier, register_loader

FORMAT = "model2vec"
#: The files of the folder; the first two hold the weights and count as the model's size, the
#: others are what model2vec needs beside them to load the folder (published with them).
WEIGHT_FILES = ("model.safetensors", "head.safetensors")
COMPANION_FILES = ("config.json", "tokenizer.json")
DTYPES = ("float32", "float16", "int8")


def quantize_rows(table: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``table`` in ``dtype`` and, for int8, each row's scale (symmetric, per row: ``row / scale``
    rounded into [-127, 127]; an all-zero row gets scale 1). ``rows * scales[:, None]`` is the
    table back, within half a step per value."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: allowed {', '.join(DTYPES)}")
    table = np.asarray(table, dtype=np.float32)
    if dtype != "int8":
        return table.astype(dtype), None
    scales = np.abs(table).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    rows = np.clip(np.rint(table / scales[:, None]), -127, 127).astype(np.int8)
    return rows, scales.astype(np.float32)


def save_static_pipeline(
    table: np.ndarray,
    head_weight: np.ndarray,
    head_bias: np.ndarray,
    tokenizer,
    label_names: list[str],
    out_dir: Path,
    dtype: str = "float32",
    base_model: str = "unknown",
) -> dict:
    """Write ``out_dir`` as model2vec's ``StaticModelPipeline``: ``table`` (one row per token id
    of ``tokenizer``, a transformers fast tokenizer) in ``dtype``, the linear head
    (``head_weight``: labels x dim) with ``label_names`` as its classes; records the format.
    Returns what was written (rows, dim, dtype)."""
    from model2vec import StaticModel
    from model2vec.inference import StaticModelPipeline
    from model2vec.inference.mlp import Activation, Layer, MLPHead

    rows, scales = quantize_rows(table, dtype)
    static = StaticModel(
        vectors=rows,
        tokenizer=tokenizer.backend_tokenizer,
        config={"normalize": False},
        base_model_name=base_model,
        weights=scales,
    )
    head = MLPHead(
        layers=[Layer(weight=np.asarray(head_weight, np.float32), bias=np.asarray(head_bias, np.float32))],
        activation=Activation.SOFTMAX,
        classes=np.asarray(label_names),
    )
    out_dir = Path(out_dir)
    StaticModelPipeline(static, head).save_pretrained(str(out_dir))
    (out_dir / "README.md").unlink(missing_ok=True)  # model2vec's card template: the project's card says it
    write_format(out_dir, FORMAT, [*WEIGHT_FILES, *COMPANION_FILES])
    return {"rows": int(rows.shape[0]), "dim": int(rows.shape[1]), "dtype": dtype}


def encode(static, texts: list[str]) -> np.ndarray:
    """model2vec's sentence vectors of ``texts`` (in this process: no worker pool)."""
    return np.asarray(static.encode(list(texts), use_multiprocessing=False), dtype=np.float32)


class StaticPipelineClassifier(Classifier):
    """A ``StaticModelPipeline`` served as model2vec serves it (``make_pipeline()``: one query's
    ``predict``), with the head's logits for a batch (one column per label id, in head order)."""

    def logits(self, texts: list[str], batch_size: int = 64, **unused) -> np.ndarray:
        return np.asarray(self.model.head.predict_regression(encode(self.model.model, texts)), dtype=np.float32)


@register_loader(FORMAT, preload=("model2vec",))
def load_static_pipeline(model_dir: Path, threads: int) -> StaticPipelineClassifier:
    """The pipeline in ``model_dir``; numpy: the caller limits its BLAS threads
    (``threadpoolctl.threadpool_limits(threads)``), as the benchmark does for every row."""
    from model2vec.inference import StaticModelPipeline

    pipeline = StaticModelPipeline.from_pretrained(Path(model_dir))

    def serve(query: str):
        return pipeline.predict([query], use_multiprocessing=False)

    return StaticPipelineClassifier(
        model=pipeline,
        tokenizer=None,
        format=FORMAT,
        make_pipeline=lambda: serve,
        runtime={"engine": "numpy (model2vec StaticModelPipeline)", "blas_threads": threads},
    )
