"""The latency floor of ``make bench``: the same ``pipeline()`` call around a model that does next to nothing.

The floor model is one ``nn.EmbeddingBag`` (the mean of the input's word-piece embeddings,
padding masked) and one ``nn.Linear`` to the labels, with the teacher's own tokenizer and label
names. It is saved as a ``save_pretrained`` folder whose ``model_format.json`` says
``bench-floor``, so :func:`recipes.ml.modelio.load_classifier` loads it like any other model (after
``import recipes.bench.floor``, which registers the loader) and the benchmark times exactly the call it
times on the catalog's models: ``pipeline("text-classification")(query)``, tokenizer included.
What a model's latency is above the floor's is the model; the floor itself is tokenization, the
pipeline's pre- and post-processing and Python.

It is fitted for a few epochs on the train split (a fastText-like bag of word pieces, seconds on
a CPU), so its accuracy is a measured number, not chance, but it is a yardstick, not a candidate.

Example::

    from recipes.bench.floor import build_floor
    from recipes.ml.modelio import load_classifier

    folder = build_floor(teacher_dir, texts, labels, id2label, "outputs/bench/floor")
    pipe = load_classifier(folder, threads=2).make_pipeline()
    pipe("What is the pin number for my account?")
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from ..ml.modelio import Classifier, register_loader
from ..runfolder import write_format

FORMAT = "bench-floor"
MODEL_TYPE = "bench-floor"


@functools.cache
def model_classes():
    """``(FloorConfig, FloorForSequenceClassification)``, defined on first use (they need torch)."""
    import torch
    from torch import nn
    from transformers import PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class FloorConfig(PretrainedConfig):
        model_type = MODEL_TYPE

        def __init__(self, vocab_size: int = 30522, dim: int = 64, **kwargs):
            super().__init__(**kwargs)
            self.vocab_size = vocab_size
            self.dim = dim

    class FloorForSequenceClassification(PreTrainedModel):
        """Mean of the word-piece embeddings, then a linear layer: next to nothing to compute."""

        config_class = FloorConfig
        base_model_prefix = "floor"

        def __init__(self, config):
            super().__init__(config)
            self.bag = nn.EmbeddingBag(config.vocab_size, config.dim, mode="sum")
            self.classifier = nn.Linear(config.dim, config.num_labels)
            self.post_init()

        def _init_weights(self, module):
            if isinstance(module, (nn.EmbeddingBag, nn.Linear)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

        def forward(self, input_ids, attention_mask=None, labels=None, **unused):
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            weights = mask.to(torch.float32) / mask.sum(dim=1, keepdim=True).clamp(min=1)
            logits = self.classifier(self.bag(input_ids, per_sample_weights=weights))
            loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return FloorConfig, FloorForSequenceClassification


def build_floor(
    tokenizer_dir: Path,
    texts: list[str],
    labels: list[int],
    id2label: dict[int, str],
    out_dir: Path,
    dim: int = 64,
    epochs: int = 3,
    batch_size: int = 64,
    learning_rate: float = 0.02,
    seed: int = 0,
    max_length: int = 128,
) -> Path:
    """Fit the floor model on ``texts``/``labels`` (``epochs`` of Adam) and save it to ``out_dir``
    with the tokenizer of ``tokenizer_dir``; returns ``out_dir``."""
    import torch
    from transformers import AutoTokenizer

    config_cls, model_cls = model_classes()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = config_cls(
        vocab_size=len(tokenizer),
        dim=dim,
        num_labels=len(id2label),
        id2label={int(k): v for k, v in id2label.items()},
        label2id={v: int(k) for k, v in id2label.items()},
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    order = np.random.default_rng(seed)
    targets = torch.tensor(labels, dtype=torch.long)
    model.train()
    for _ in range(epochs):
        perm = order.permutation(len(texts))
        for start in range(0, len(texts), batch_size):
            idx = perm[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            loss = model(enc["input_ids"], enc["attention_mask"], labels=targets[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    write_format(out_dir, FORMAT, sorted(p.name for p in out_dir.glob("*.safetensors")), dim=dim, epochs=epochs)
    return out_dir


def quiet_pipeline(model, tokenizer):
    """``pipeline("text-classification")`` around ``model``, without the error transformers logs
    for a model class it does not list for the task (the pipeline runs it all the same)."""
    from transformers import pipeline

    base = logging.getLogger("transformers.pipelines.base")
    level = base.level
    base.setLevel(logging.CRITICAL)
    try:
        return pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    finally:
        base.setLevel(level)


@register_loader(FORMAT)
def load_floor(model_dir: Path, threads: int) -> Classifier:
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    _, model_cls = model_classes()
    model = model_cls.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return Classifier(
        model=model,
        tokenizer=tokenizer,
        format=FORMAT,
        make_pipeline=lambda: quiet_pipeline(model, tokenizer),
        runtime={
            "engine": "torch",
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
        },
    )
