"""A static-embedding text classifier: a table of token vectors, their mean, a linear head.

No attention and no layers run per token: a query costs a tokenization, one look-up per token, a
mean and one small matrix product (optionally one hidden layer before the head). Optionally a
second table holds hashed pairs of adjacent pieces (bigrams, as fastText does): their mean is added
to the pieces' mean, which gives the model the word order a mean of single pieces cannot see. The
``distill-static`` stage initializes the table from a teacher (model2vec-style: every vocabulary
piece run through the teacher's encoder, PCA, Zipf weights) and trains it on the teacher's soft
targets.

This file is self-contained on purpose (torch and transformers only): ``save_pretrained`` copies
it next to the weights and writes ``auto_map`` into ``config.json``, so a model pushed to a Hub
loads anywhere with ``pipeline("text-classification", model=repo_id, trust_remote_code=True)``
without this project installed. Importing it registers the classes with transformers' Auto
classes, so code that imported it loads such folders without ``trust_remote_code``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "static-classifier"
#: A bigram of pieces ``(a, b)`` takes row ``(a * BIGRAM_MULTIPLIER + b) mod bigram_buckets`` of the
#: bigram table: a multiplicative hash (Knuth's), so neighbouring ids spread over the buckets. The
#: product stays below 2**63 for any vocabulary under 3 billion pieces.
BIGRAM_MULTIPLIER = 2654435761


def bigram_rows(input_ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """The bigram table's row of each pair of adjacent pieces: shape ``(batch, length - 1)``."""
    return torch.remainder(input_ids[:, :-1] * BIGRAM_MULTIPLIER + input_ids[:, 1:], buckets)


class StaticConfig(PretrainedConfig):
    """``vocab_size`` rows of ``dim`` values; ``hidden`` units in the optional hidden layer (0: none);
    ``bigram_buckets`` rows of ``dim`` values for hashed bigrams (0: none)."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 30522,
        dim: int = 256,
        hidden: int = 0,
        dropout: float = 0.0,
        bigram_buckets: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.bigram_buckets = bigram_buckets
        self.vocab_size = vocab_size
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout


class StaticForSequenceClassification(PreTrainedModel):
    """Logits = head(mean of the rows of the input's tokens [+ mean of the rows of its bigrams]),
    padding masked out."""

    config_class = StaticConfig
    base_model_prefix = "static"

    def __init__(self, config: StaticConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.bigrams = None
        if config.bigram_buckets:
            self.bigrams = nn.Embedding(config.bigram_buckets, config.dim)
        width = config.dim
        self.hidden = None
        if config.hidden:
            self.hidden = nn.Sequential(nn.Linear(config.dim, config.hidden), nn.GELU())
            width = config.hidden
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Embedding, nn.Linear)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def forward(self, input_ids, attention_mask=None, labels=None, **unused) -> SequenceClassifierOutput:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        mask = mask.unsqueeze(-1).to(self.embeddings.weight.dtype)
        pooled = (self.embeddings(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        if self.bigrams is not None:  # a pair counts when both its pieces are the text's
            pairs = mask[:, 1:] * mask[:, :-1]
            rows = self.bigrams(bigram_rows(input_ids, self.config.bigram_buckets))
            pooled = pooled + (rows * pairs).sum(dim=1) / pairs.sum(dim=1).clamp(min=1.0)
        if self.hidden is not None:
            pooled = self.hidden(pooled)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels, ignore_index=-100)
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MODEL_TYPE, StaticConfig, exist_ok=True)
AutoModelForSequenceClassification.register(StaticConfig, StaticForSequenceClassification, exist_ok=True)
StaticConfig.register_for_auto_class()
StaticForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
