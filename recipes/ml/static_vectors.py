"""The first table of a static student: model2vec's token vectors of the teacher's own encoder.

model2vec (``distill_from_model``) runs every vocabulary piece through the encoder once, mean-pools
its output, reduces the vectors with PCA and scales each by a Zipf weight (SIF), so frequent pieces
weigh less in a mean. The rows are then placed at the teacher tokenizer's ids, so the student
keeps the teacher's tokenizer unchanged.
"""

from __future__ import annotations

import importlib.util

import numpy as np


def missing() -> str | None:
    """None when model2vec's distillation can run here; otherwise what to install."""
    absent = [name for name in ("model2vec", "skeletoken") if importlib.util.find_spec(name) is None]
    if absent:
        return f"model2vec's distillation needs {', '.join(absent)}: pip install 'model2vec[distill]==0.9.0'"
    return None


def teacher_vectors(teacher, tokenizer, dim: int) -> tuple[np.ndarray, dict]:
    """A ``(len(tokenizer), d)`` float32 table: row ``i`` is model2vec's vector of token id ``i``
    from ``teacher``'s encoder (``d`` = ``dim``, or the encoder's width if that is smaller); a
    piece model2vec leaves out (``[unused..]``) keeps a zero row. Returns the table and a record."""
    from functools import partial
    from unittest import mock

    from model2vec.distill import distill_from_model, inference
    from tqdm.auto import tqdm

    from ..engine.progress import bars_enabled

    # model2vec's "Encoding tokens" bar takes no switch: it follows the project's (none in a log)
    with mock.patch.object(inference, "tqdm", partial(tqdm, disable=not bars_enabled())):
        static = distill_from_model(
            model=teacher.base_model,
            tokenizer=tokenizer,
            pca_dims=min(dim, teacher.config.hidden_size),
            quantize_to="float32",
        )
    vectors = np.asarray(static.embedding, dtype=np.float32)
    ids = tokenizer.get_vocab()
    table = np.zeros((len(tokenizer), vectors.shape[1]), dtype=np.float32)
    placed = 0
    for token, row in static.tokenizer.get_vocab().items():
        i = ids.get(token)
        if i is not None and i < len(table) and row < len(vectors):
            table[i] = vectors[row]
            placed += 1
    return table, {"init": "model2vec", "rows": len(table), "rows_from_teacher": placed, "dim": int(vectors.shape[1])}
