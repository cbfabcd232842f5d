"""Teacher-labelled data augmentation for distillation (TinyBERT-style, word level).

Each training text gets ``copies`` perturbed versions; each word is, with probability
``word_prob``, masked, deleted, swapped with its neighbour, or replaced by one of its nearest
neighbours in the teacher's word-embedding matrix. The copies carry no gold label: only the
teacher's soft targets train on them. Everything is drawn from one seeded generator, so the
same texts and seed give the same copies; only the training split is ever augmented.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

import numpy as np

Op = Literal["mask", "delete", "swap", "neighbour"]
OPS: tuple[str, ...] = get_args(Op)
_WORD = re.compile(r"^[a-z]+$")


def whole_word_pieces(tokenizer, min_letters: int = 2) -> dict[str, int]:
    """Lower-case words of ``min_letters`` or more letters that the tokenizer writes as one piece of its own,
    after a space as inside a sentence
    -> that piece's id, whatever the vocabulary's kind: a WordPiece word (``weather``), a byte-level
    BPE word-start piece (``Ġweather``), a SentencePiece one (``▁weather``)."""
    found = {}
    pieces = sorted(tokenizer.get_vocab().items())
    words = [tokenizer.convert_tokens_to_string([piece]).strip() for piece, _ in pieces]
    shaped = [
        (word, piece, i) for word, (piece, i) in zip(words, pieces) if _WORD.match(word) and len(word) >= min_letters
    ]
    own = tokenizer([f" {word}" for word, _, _ in shaped], add_special_tokens=False)["input_ids"] if shaped else []
    for (word, _, i), ids in zip(shaped, own):
        if ids == [i]:  # the tokenizer writes the word as exactly this piece
            found[word] = i
    return found


def word_neighbours(texts: list[str], tokenizer, embeddings: np.ndarray, k: int = 5) -> dict[str, list[str]]:
    """For each lower-case word of ``texts`` that is one whole-word piece of ``tokenizer``, its ``k``
    nearest whole-word pieces by cosine similarity of the teacher's input embeddings (as words)."""
    vocab = whole_word_pieces(tokenizer, min_letters=1)  # a one-letter word gets neighbours, is none
    candidates = sorted((word, i) for word, i in vocab.items() if len(word) > 1)
    cand_ids = np.array([i for _, i in candidates])
    if not len(cand_ids):
        return {}
    cand = embeddings[cand_ids] / np.linalg.norm(embeddings[cand_ids], axis=1, keepdims=True).clip(1e-8)
    words = sorted({w for t in texts for w in t.lower().split() if w in vocab})
    if not words:
        return {}
    ids = np.array([vocab[w] for w in words])
    query = embeddings[ids] / np.linalg.norm(embeddings[ids], axis=1, keepdims=True).clip(1e-8)
    sims = query @ cand.T
    out = {}
    for row, word in zip(sims, words):
        order = np.argsort(-row)[: k + 1]
        out[word] = [candidates[j][0] for j in order if candidates[j][0] != word][:k]
    return out


def perturb(
    text: str,
    rng: np.random.Generator,
    word_prob: float,
    ops: tuple[str, ...],
    neighbours: dict[str, list[str]],
    mask_token: str,
) -> str:
    """One perturbed copy of ``text``; never empty (a text whose every word was deleted keeps one)."""
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if rng.random() >= word_prob:
            out.append(word)
            i += 1
            continue
        op = ops[rng.integers(len(ops))]
        if op == "mask":
            out.append(mask_token)
        elif op == "swap" and i + 1 < len(words):
            out += [words[i + 1], word]
            i += 1
        elif op == "neighbour" and neighbours.get(word.lower()):
            options = neighbours[word.lower()]
            out.append(options[rng.integers(len(options))])
        elif op != "delete":
            out.append(word)
        i += 1
    if not words:
        return text
    return " ".join(out) or words[rng.integers(len(words))]


def augment_texts(
    texts: list[str],
    copies: int,
    word_prob: float,
    ops: tuple[str, ...],
    seed: int,
    neighbours: dict[str, list[str]] | None = None,
    mask_token: str = "[MASK]",
) -> list[str]:
    """``copies`` perturbed versions of every text, copy-major: all first copies, then all
    second copies... Deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    return [perturb(t, rng, word_prob, ops, neighbours or {}, mask_token) for _ in range(copies) for t in texts]
