"""The peer of ``make bench``: what a practitioner would try first for fast intent detection.

A static embedding model (`model2vec <https://github.com/MinishLab/model2vec>`_, distilled from
the same backbone the teacher was fine-tuned from: every vocabulary piece run through it once,
mean-pooled, PCA, Zipf weights) and a scikit-learn logistic regression trained on its embeddings
of the train split. A query costs a tokenization, a mean of looked-up rows and one small matrix
product: no transformer at all. Needs the ``bench`` extra (``pip install -e '.[bench]'``:
``model2vec[distill]``, ``scikit-learn``); :func:`missing` says what is not installed.

Folder (:func:`build_peer`)::

    static/              the StaticModel (model.safetensors, tokenizer.json, config.json)
    classifier.npz       the logistic regression: coef, intercept, classes
    peer.json            how it was made (backbone, pca_dims, C, train rows)
    model_format.json    format ``model2vec+logreg``: :func:`recipes.ml.modelio.load_classifier` loads it
                         (once this module registered the loader), like every benchmarked model

Example::

    from recipes.bench.peer import build_peer
    from recipes.ml.modelio import load_classifier

    folder = build_peer("sentence-transformers/all-MiniLM-L6-v2", texts, labels, "outputs/bench/peer")
    peer = load_classifier(folder, threads=2)                # a Classifier, as every row is
    peer.make_pipeline()("What is the pin number for my account?")   # array([label id])
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from ..ml.modelio import Classifier, register_loader
from ..runfolder import write_format

FORMAT = "model2vec+logreg"
STATIC_DIR = "static"
CLASSIFIER_FILE = "classifier.npz"
INFO_FILE = "peer.json"
#: The files whose bytes are the peer's size (the tokenizer is not counted, as for every row).
WEIGHT_FILES = (f"{STATIC_DIR}/model.safetensors", CLASSIFIER_FILE)


def missing() -> str | None:
    """None when the peer can be built here; otherwise what to install."""
    absent = [name for name in ("model2vec", "sklearn", "skeletoken") if importlib.util.find_spec(name) is None]
    if absent:
        return (
            f"the peer needs {', '.join(absent)}: pip install -e '.[bench]' (model2vec[distill]==0.9.0, scikit-learn)"
        )
    return None


def build_peer(
    backbone: str | Path,
    texts: list[str],
    labels: list[int],
    out_dir: Path,
    pca_dims: int = 256,
    C: float = 20.0,
    max_iter: int = 2000,
    seed: int = 0,
) -> Path:
    """Distil a static model from ``backbone`` (a Hub id or a folder), fit a logistic regression on
    its embeddings of ``texts``, save both to ``out_dir``; returns ``out_dir``."""
    from model2vec.distill import distill
    from sklearn.linear_model import LogisticRegression

    out_dir = Path(out_dir)
    static = distill(model_name=str(backbone), pca_dims=pca_dims)
    features = np.asarray(static.encode(list(texts)), dtype=np.float32)
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(features, np.asarray(labels))
    out_dir.mkdir(parents=True, exist_ok=True)
    static.save_pretrained(str(out_dir / STATIC_DIR))
    np.savez(out_dir / CLASSIFIER_FILE, coef=clf.coef_, intercept=clf.intercept_, classes=clf.classes_)
    info = {
        "format": FORMAT,
        "backbone": Path(str(backbone)).name,
        "pca_dims": int(static.embedding.shape[1]),
        "vocabulary": int(static.embedding.shape[0]),
        "dtype": str(static.embedding.dtype),
        "C": C,
        "train_rows": len(texts),
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    write_format(out_dir, FORMAT, list(WEIGHT_FILES))
    return out_dir


class PeerClassifier(Classifier):
    """The peer as every benchmarked model is served: logits (the logistic regression's decision
    function) for a batch, and ``make_pipeline()``, one query's encode + predict."""

    def logits(self, texts: list[str], batch_size: int = 64, **unused) -> np.ndarray:
        """One column per label id (a label the regression never saw gets -inf)."""
        static, classifier = self.model
        scores = classifier.decision_function(np.asarray(static.encode(list(texts)), dtype=np.float32))
        out = np.full((len(texts), int(classifier.classes_.max()) + 1), -np.inf, dtype=np.float32)
        out[:, classifier.classes_] = scores
        return out


@register_loader(FORMAT, preload=("model2vec", "sklearn.linear_model"))
def load_peer(folder: Path, threads: int) -> PeerClassifier:
    """The peer saved in ``folder``. It runs on numpy: the caller limits its BLAS threads
    (``threadpoolctl.threadpool_limits(threads)``), as the benchmark does for every row."""
    from model2vec import StaticModel
    from sklearn.linear_model import LogisticRegression

    folder = Path(folder)
    static = StaticModel.from_pretrained(str(folder / STATIC_DIR))
    saved = np.load(folder / CLASSIFIER_FILE)
    clf = LogisticRegression()
    clf.coef_, clf.intercept_, clf.classes_ = saved["coef"], saved["intercept"], saved["classes"]
    clf.n_features_in_ = clf.coef_.shape[1]

    def serve(query: str):
        return clf.predict(np.asarray(static.encode([query]), dtype=np.float32))

    return PeerClassifier(
        model=(static, clf),
        tokenizer=None,
        format=FORMAT,
        make_pipeline=lambda: serve,
        runtime={"engine": "numpy (model2vec + scikit-learn)", "blas_threads": threads},
    )
