"""``export-model2vec``: write a static student as model2vec's ``StaticModelPipeline``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..ml import model2vec_io
from ..plan.bounds import FiniteFloat
from .base import Publishing, StageContext, StageSpec, register
from .onnx_export import OnnxStageSpec


class ExportModel2VecSpec(OnnxStageSpec):
    """Write ``input``, a static student (``distill-static``, usually calibrated), in model2vec's
    format (:mod:`recipes.ml.model2vec_io`): its table and linear head as a
    ``StaticModelPipeline``, which serves a query in numpy with no transformers and no ONNX
    Runtime, the way model2vec serves its own classifiers. The calibration bias is in the head
    already.

    model2vec pools the text's tokens only, so the student must have been trained that way
    (``special_tokens: false`` on its ``distill-static`` stage) and have no hidden layer (a
    model2vec head's hidden layers are ReLU; the student's is GELU) and no bigram table.
    ``dtype`` stores the table in float32, float16 or int8 (one scale per row, in model2vec's
    per-token ``weights``).
    Parity against the PyTorch input on ``parity_samples`` eval rows is part of the stage
    (model2vec drops ``[UNK]`` pieces, which the student averages in: the one expected difference).

    .. code-block:: yaml

        stages:
          - name: model2vec
            type: export-model2vec
            input: calibrate
            dtype: int8
    """

    type: Literal["export-model2vec"]
    dtype: Literal["float32", "float16", "int8"] = Field(
        "int8", description="How the table is stored: float32, float16, or int8 with a float32 scale per row."
    )
    atol: FiniteFloat | None = Field(
        None, gt=0, description="Max |logit difference| vs PyTorch; null: record only (int8 rounds the table)."
    )

    def source_problem(self, role: str, source: StageSpec) -> str | None:
        """A static student that pools [CLS]/[SEP] or has a hidden layer, when it is the direct
        input (through a calibrate-oos stage, the stage itself refuses it before any work)."""
        traits = source.output_traits()
        if "special-tokens" in traits:
            found = traits["special-tokens"]
            return f"model2vec pools the text's pieces alone; {source.name!r} has {found}: set it false"
        if "hidden-layer" in traits:
            return f"model2vec's head has no GELU hidden layer; {source.name!r} has {traits['hidden-layer']}: set 0"
        if "bigrams" in traits:
            return f"model2vec averages single pieces; {source.name!r} has {traits['bigrams']}: set 0"
        return None


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="model2vec",
    phrase="written in model2vec's format ({dtype} table)",
    repo_dir="model2vec",
    usage="usage/model2vec.md.j2",
)


def student_problem(config: dict, adds_special_tokens: bool) -> str | None:
    """Why a model (its config.json, and whether its tokenizer adds [CLS]/[SEP]) cannot be
    written in model2vec's format; None if it can."""
    from ..ml.static_model import MODEL_TYPE

    if config.get("model_type") != MODEL_TYPE:
        return (
            f"it is a {config.get('model_type')!r} model; export-model2vec takes a static student: "
            "a distill-static stage (or its calibrate-oos stage)"
        )
    if config.get("hidden"):
        return "it has a hidden layer (GELU), which model2vec's head cannot express; train it with hidden: 0"
    if config.get("bigram_buckets"):
        return "it has a table of hashed bigrams, which model2vec cannot look up; train it with bigrams: 0"
    if adds_special_tokens:
        return (
            "its tokenizer adds [CLS]/[SEP], which it averages in and model2vec leaves out; "
            "train it with special_tokens: false on its distill-static stage"
        )
    return None


@register(
    "export-model2vec",
    ExportModel2VecSpec,
    libraries=("torch", "transformers", "tokenizers", "model2vec"),
    publishing=PUBLISHING,
    makes=model2vec_io.FORMAT,
)
def run(spec: ExportModel2VecSpec, ctx: StageContext) -> dict:
    import json

    from transformers import AutoTokenizer

    from ..ml.modelio import auto_classifier
    from ..ml.onnxio import parity_check

    source = ctx.inputs["input"]
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = json.loads((source / "config.json").read_text())
    adds = tokenizer("a").input_ids != tokenizer("a", add_special_tokens=False).input_ids
    if problem := student_problem(config, adds):
        raise ValueError(f"export-model2vec: input {spec.input!r}: {problem}")
    model = auto_classifier(source).eval()
    written = model2vec_io.save_static_pipeline(
        model.embeddings.weight.detach().numpy(),
        model.classifier.weight.detach().numpy(),
        model.classifier.bias.detach().numpy(),
        tokenizer,
        [model.config.id2label[i] for i in range(model.config.num_labels)],
        ctx.out_dir,
        dtype=spec.dtype,
        base_model=spec.input,
    )
    ctx.log.info("model2vec pipeline: %d rows x %d, %s", written["rows"], written["dim"], written["dtype"])
    return {**written, "parity": parity_check(spec, ctx, source, ctx.out_dir, f"{spec.input} (PyTorch)")}
