"""How a stage's model folder is written and read back, whatever its format.

Every model-producing stage leaves a folder with config + tokenizer files and a
``model_format.json`` naming its format and the weight files that count as its size.
Readers ask :func:`load_classifier` and get the same interface for PyTorch fp32, PyTorch
dynamic int8 and ONNX Runtime models, so the benchmark treats them all alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runfolder import PYTORCH, read_format, write_format
from .families import align_tokenizer, model_inputs

PYTORCH_DYNAMIC_INT8 = "pytorch-dynamic-int8"
ONNX = "onnx"
QUANTIZED_STATE_FILE = "quantized_state_dict.pt"


def save_pretrained_model(model, tokenizer, out_dir: Path) -> None:
    """Save a transformers model + tokenizer as safetensors and record the PyTorch format. The
    tokenizer is saved returning only the inputs the model takes (:func:`.families.align_tokenizer`)."""
    model.save_pretrained(out_dir, safe_serialization=True)
    align_tokenizer(model, tokenizer).save_pretrained(out_dir)
    write_format(out_dir, PYTORCH, sorted(p.name for p in Path(out_dir).glob("*.safetensors")))


@dataclass
class Classifier:
    """A loaded model: something callable on tokenized tensors, its tokenizer and pipeline."""

    model: Any
    tokenizer: Any
    format: str
    make_pipeline: Callable[[], Any]
    runtime: dict = field(default_factory=dict)  # thread settings as the engine reports them
    #: Where it runs: every loader here places the model on the CPU (ONNX Runtime's CPU provider,
    #: PyTorch ``device='cpu'``), whatever device trained it, so latency rows are CPU rows.
    device: str = "cpu"

    def logits(
        self, texts: list[str], batch_size: int = 64, max_length: int = 128, desc: str | None = None
    ) -> np.ndarray:
        """Logits for ``texts`` in batches; ``desc`` shows a progress bar with that label. The model
        gets only the tokenizer outputs its forward takes (:func:`.families.model_inputs`)."""
        import torch
        from tqdm.auto import tqdm

        from ..engine.progress import bars_enabled

        out = []
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc=desc, disable=desc is None or not bars_enabled(), unit="batch"):
                enc = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                out.append(np.asarray(self.model(**model_inputs(self.model, enc)).logits, dtype=np.float32))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def predictions(model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """Argmax predictions of a PyTorch classifier on ``texts``."""
    model.eval()
    clf = Classifier(model=model, tokenizer=tokenizer, format=PYTORCH, make_pipeline=lambda: None)
    logits = clf.logits(texts, batch_size=batch_size, max_length=max_length)
    return logits.argmax(axis=-1) if len(logits) else np.zeros(0, dtype=int)


Loader = Callable[[Path, int], Classifier]
#: format name -> loader(model_dir, threads). The ONNX loader registers in recipes.ml.onnxio; a
#: module that defines another format registers its loader when it is imported.
LOADERS: dict[str, Loader] = {}
#: format name -> the libraries its loader imports: a load time measured in a fresh process
#: imports them first, so it is the model's load time, not the libraries' (recipes.measure.probe).
PRELOAD: dict[str, tuple[str, ...]] = {}


def register_loader(format: str, preload: tuple[str, ...] = ()) -> Callable[[Loader], Loader]:
    def decorator(fn: Loader) -> Loader:
        LOADERS[format] = fn
        PRELOAD[format] = ("torch", "transformers", *preload)
        return fn

    return decorator


def load_classifier(model_dir: Path, threads: int) -> Classifier:
    fmt = read_format(model_dir)
    if fmt.format not in LOADERS:
        raise ValueError(f"{model_dir}: unknown model format {fmt.format!r}; known: {sorted(LOADERS)}")
    return LOADERS[fmt.format](Path(model_dir), threads)


def _torch_classifier(model, tokenizer, format: str) -> Classifier:
    import torch
    from transformers import pipeline

    model.eval()
    tokenizer = align_tokenizer(model, tokenizer)  # pipeline() passes every tokenizer output to the model
    return Classifier(
        model=model,
        tokenizer=tokenizer,
        format=format,
        make_pipeline=lambda: pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu"),
        runtime={
            "engine": "torch",
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
        },
    )


def know_own_architectures() -> None:
    """Register this project's own model classes (:mod:`.static_model`) with transformers' Auto
    classes, so ``from_pretrained`` loads the folders it wrote without ``trust_remote_code``
    (their ``config.json`` names the code a user without this project fetches instead)."""
    from . import static_model  # noqa: F401  (importing it registers its classes)


def auto_classifier(model_dir, **kwargs):
    """``AutoModelForSequenceClassification.from_pretrained`` that also knows this project's own
    architectures (:func:`know_own_architectures`)."""
    from transformers import AutoModelForSequenceClassification

    know_own_architectures()
    return AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs)


@register_loader(PYTORCH)
def load_pytorch(model_dir: Path, threads: int) -> Classifier:
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    model = auto_classifier(model_dir)
    return _torch_classifier(model, AutoTokenizer.from_pretrained(model_dir), PYTORCH)


def quantize_linear_dynamic(model):
    """``torch.ao`` dynamic int8 quantization of every ``nn.Linear`` (weights int8, activations
    quantized on the fly)."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


@register_loader(PYTORCH_DYNAMIC_INT8)
def load_pytorch_dynamic_int8(model_dir: Path, threads: int) -> Classifier:
    """Rebuild the architecture from config, quantize it the same way, then load the int8 state."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    know_own_architectures()
    config = AutoConfig.from_pretrained(model_dir)
    model = quantize_linear_dynamic(AutoModelForSequenceClassification.from_config(config))
    state = torch.load(Path(model_dir) / QUANTIZED_STATE_FILE, weights_only=True)
    model.load_state_dict(state)
    return _torch_classifier(model, AutoTokenizer.from_pretrained(model_dir), PYTORCH_DYNAMIC_INT8)


def onnx_path(model_dir: Path) -> Path:
    """The ``.onnx`` file of an ONNX stage folder; a clear error for any other format."""
    fmt = read_format(model_dir)
    if fmt.format != ONNX:
        raise ValueError(
            f"{model_dir} holds a {fmt.format!r} model, not an ONNX one; "
            "put an export-onnx stage before this stage and take its output."
        )
    return Path(model_dir) / fmt.extra["file_name"]


def session_options(threads: int):
    """Explicit session settings, so ORT rows use the same thread budget as PyTorch rows."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


@register_loader(ONNX, preload=("optimum.onnxruntime", "optimum.pipelines"))
def load_onnx(model_dir: Path, threads: int) -> Classifier:
    """An ``ORTModelForSequenceClassification`` on ``threads`` intra-op threads (inter-op 1).

    The settings stay readable on the loaded model:
    ``clf.model.session.get_session_options().intra_op_num_threads``.
    """
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from optimum.pipelines import pipeline
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)  # the pipeline's pre/post-processing runs in torch
    know_own_architectures()
    path = onnx_path(model_dir)
    model = ORTModelForSequenceClassification.from_pretrained(
        model_dir, file_name=path.name, session_options=session_options(threads)
    )
    tokenizer = align_tokenizer(model, AutoTokenizer.from_pretrained(model_dir))
    used = model.session.get_session_options()
    return Classifier(
        model=model,
        tokenizer=tokenizer,
        format=ONNX,
        make_pipeline=lambda: pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu"),
        runtime={
            "engine": "onnxruntime",
            "intra_op_threads": used.intra_op_num_threads,
            "inter_op_threads": used.inter_op_num_threads,
            "execution_mode": "sequential",
            "providers": model.session.get_providers(),
        },
    )
