"""The peer of ``make bench``: what a practitioner would try first for fast intent detection.

A static embedding model (`model2vec <https://github.com/MinishLab/model2vec>`_, distilled from
the same backbone the teacher was fine-tuned from: every vocabulary piece run through it once,
mean-pooled, PCA, Zipf weights) with one of two heads, whichever is more accurate on the
validation split (the test split never chooses):

- ``logreg``: a scikit-learn logistic regression on its embeddings of the train split;
- ``trained``: model2vec's own ``StaticModelForClassification`` (``model2vec.train``: the vectors
  and a small MLP head trained end to end, early-stopped on validation), saved as its
  ``StaticModelPipeline``, the model2vec way to serve a classifier.

A query costs a tokenization, a mean of looked-up rows and one or two small matrix products: no
transformer at all. Needs the ``bench`` extra (``pip install -e '.[bench]'``:
``model2vec[distill]``, ``scikit-learn``); :func:`missing` says what is not installed.

Folder (:func:`build_peer`)::

    static/              the StaticModel (model.safetensors, tokenizer.json, config.json)
    classifier.npz       head logreg: the logistic regression (coef, intercept, classes)
    pipeline/            head trained: the StaticModelPipeline (its own vectors and head.safetensors)
    peer.json            how it was made (backbone, pca_dims, C, train rows) and both heads'
                         validation accuracy, with the one kept
    model_format.json    ``model2vec+logreg`` or ``model2vec-pipeline``: :func:`recipes.ml.modelio.load_classifier`
                         loads it (once this module registered the loaders), like every benchmarked model

Example::

    from recipes.bench.peer import build_peer
    from recipes.ml.modelio import load_classifier

    folder = build_peer("sentence-transformers/all-MiniLM-L6-v2", train, validation, "outputs/bench/peer")
    peer = load_classifier(folder, threads=2)                # a Classifier, as every row is
    peer.make_pipeline()("What is the pin number for my account?")   # array([label id])
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from unittest.mock import patch

import numpy as np

from ..engine.progress import bars_enabled
from ..ml.model2vec_io import encode
from ..ml.modelio import Classifier, register_loader
from ..runfolder import write_format

LOGREG, TRAINED = "logreg", "trained"
#: The heads tried, in order; on a tie in validation accuracy the first (the simpler) is kept.
HEADS = (LOGREG, TRAINED)
FORMATS = {LOGREG: "model2vec+logreg", TRAINED: "model2vec-pipeline"}
#: What each head is, in words (the bench's row note).
HEAD_TEXT = {
    LOGREG: "scikit-learn logistic regression",
    TRAINED: "model2vec's StaticModelForClassification (vectors and MLP head trained end to end)",
}
STATIC_DIR = "static"
PIPELINE_DIR = "pipeline"
CLASSIFIER_FILE = "classifier.npz"
INFO_FILE = "peer.json"
#: The files whose bytes are the peer's size (the tokenizer is not counted, as for every row).
WEIGHT_FILES = {
    LOGREG: (f"{STATIC_DIR}/model.safetensors", CLASSIFIER_FILE),
    TRAINED: (f"{PIPELINE_DIR}/model.safetensors", f"{PIPELINE_DIR}/head.safetensors"),
}


def missing() -> str | None:
    """None when the peer can be built here; otherwise what to install."""
    absent = [name for name in ("model2vec", "sklearn", "skeletoken") if importlib.util.find_spec(name) is None]
    if absent:
        return (
            f"the peer needs {', '.join(absent)}: pip install -e '.[bench]' (model2vec[distill]==0.9.0, scikit-learn)"
        )
    return None


#: model2vec's progress bars (bare ``tqdm``, no switch of their own): module -> name.
MODEL2VEC_BARS = (
    ("model2vec.distill.inference", "tqdm"),
    ("model2vec.train.trainer", "tqdm"),
    ("model2vec.train.base", "trange"),
)


@contextmanager
def _model2vec_bars_follow_ours():
    """Inside: model2vec's bars are off when this project's are
    (:func:`recipes.engine.progress.bars_enabled`: off when the output is not a terminal); its
    modules get their own ``tqdm`` back after."""
    with ExitStack() as stack:
        if not bars_enabled():
            for module_name, name in MODEL2VEC_BARS:
                module = importlib.import_module(module_name)
                stack.enter_context(patch.object(module, name, partial(getattr(module, name), disable=True)))
        yield


def build_peer(
    backbone: str | Path,
    train: tuple[list[str], list[int]],
    validation: tuple[list[str], list[int]],
    out_dir: Path,
    pca_dims: int = 256,
    C: float = 20.0,
    max_iter: int = 2000,
    seed: int = 0,
    heads: tuple[str, ...] = HEADS,
) -> Path:
    """Distil a static model from ``backbone`` (a Hub id or a folder), fit both heads on ``train``
    (texts, label ids), keep the one of ``heads`` more accurate on ``validation`` and save it to
    ``out_dir``; returns ``out_dir``."""
    from model2vec.distill import distill
    from model2vec.train import StaticModelForClassification
    from sklearn.linear_model import LogisticRegression

    if unknown := sorted(set(heads) - set(HEADS)):
        raise ValueError(f"unknown peer head {unknown[0]!r}; heads: {', '.join(HEADS)}")
    out_dir = Path(out_dir)
    texts, labels = list(train[0]), [int(y) for y in train[1]]
    val_texts, val_labels = list(validation[0]), np.asarray(validation[1])
    known = set(labels)
    seen = [i for i, y in enumerate(val_labels) if y in known]  # model2vec stops early on these
    with _model2vec_bars_follow_ours():
        static = distill(model_name=str(backbone), pca_dims=pca_dims)
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(encode(static, texts), labels)
        trained = StaticModelForClassification.from_static_model(model=static).fit(
            texts,
            labels,
            X_val=[val_texts[i] for i in seen],
            y_val=[int(val_labels[i]) for i in seen],
            random_seed=seed,
        )
    pipeline = trained.to_pipeline()
    accuracy = {
        LOGREG: float(np.mean(clf.predict(encode(static, val_texts)) == val_labels)),
        TRAINED: float(np.mean(pipeline.predict(val_texts, use_multiprocessing=False) == val_labels)),
    }
    kept = max(heads, key=lambda head: accuracy[head])
    out_dir.mkdir(parents=True, exist_ok=True)
    if kept == LOGREG:
        static.save_pretrained(str(out_dir / STATIC_DIR))
        np.savez(out_dir / CLASSIFIER_FILE, coef=clf.coef_, intercept=clf.intercept_, classes=clf.classes_)
    else:
        pipeline.save_pretrained(str(out_dir / PIPELINE_DIR))
    info = {
        "format": FORMATS[kept],
        "head": kept,
        "validation_accuracy": accuracy,
        "backbone": Path(str(backbone)).name,
        "pca_dims": int(static.embedding.shape[1]),
        "vocabulary": int(static.embedding.shape[0]),
        "dtype": str(static.embedding.dtype),
        "C": C,
        "train_rows": len(texts),
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    write_format(out_dir, FORMATS[kept], list(WEIGHT_FILES[kept]))
    return out_dir


def read_info(folder: Path) -> dict:
    """``peer.json`` of a built peer: the head kept and both heads' validation accuracy."""
    return json.loads((Path(folder) / INFO_FILE).read_text())


class PeerClassifier(Classifier):
    """The peer as every benchmarked model is served: logits for a batch (the head's raw scores:
    the regression's decision function or the MLP's output), and ``make_pipeline()``, one query's
    encode + predict. ``model`` is ``(scores, classes)``: texts -> one column per class."""

    def logits(self, texts: list[str], batch_size: int = 64, **unused) -> np.ndarray:
        """One column per label id (a label the head never saw gets -inf)."""
        scores, classes = self.model
        out = np.full((len(texts), int(classes.max()) + 1), -np.inf, dtype=np.float32)
        out[:, classes] = scores(list(texts))
        return out


def _peer(scores, classes, serve, threads: int, head: str) -> PeerClassifier:
    return PeerClassifier(
        model=(scores, np.asarray(classes, dtype=np.int64)),
        tokenizer=None,
        format=FORMATS[head],
        make_pipeline=lambda: serve,
        runtime={"engine": f"numpy (model2vec + {HEAD_TEXT[head]})", "blas_threads": threads},
    )


@register_loader(FORMATS[LOGREG], preload=("model2vec", "sklearn.linear_model"))
def load_peer(folder: Path, threads: int) -> PeerClassifier:
    """The logistic-regression peer saved in ``folder``. It runs on numpy: the caller limits its
    BLAS threads (``threadpoolctl.threadpool_limits(threads)``), as the benchmark does for every row."""
    from model2vec import StaticModel
    from sklearn.linear_model import LogisticRegression

    folder = Path(folder)
    static = StaticModel.from_pretrained(str(folder / STATIC_DIR))
    saved = np.load(folder / CLASSIFIER_FILE)
    clf = LogisticRegression()
    clf.coef_, clf.intercept_, clf.classes_ = saved["coef"], saved["intercept"], saved["classes"]
    clf.n_features_in_ = clf.coef_.shape[1]

    def serve(query: str):
        return clf.predict(encode(static, [query]))

    return _peer(lambda texts: clf.decision_function(encode(static, texts)), clf.classes_, serve, threads, LOGREG)


@register_loader(FORMATS[TRAINED], preload=("model2vec",))
def load_trained_peer(folder: Path, threads: int) -> PeerClassifier:
    """The trained peer saved in ``folder``, served as model2vec serves it
    (``StaticModelPipeline.predict``); numpy, like :func:`load_peer`."""
    from model2vec.inference import StaticModelPipeline

    pipeline = StaticModelPipeline.from_pretrained(Path(folder) / PIPELINE_DIR)

    def serve(query: str):
        return pipeline.predict([query], use_multiprocessing=False)

    def scores(texts: list[str]) -> np.ndarray:
        return pipeline.head.predict_regression(encode(pipeline.model, texts))

    return _peer(scores, pipeline.classes_, serve, threads, TRAINED)
