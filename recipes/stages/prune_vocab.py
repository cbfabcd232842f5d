"""``prune-vocab``: trim a classifier's vocabulary (WordPiece, byte-level BPE or Unigram) to the
pieces its data needs.

The vocabulary embedding is most of a small encoder (all-MiniLM-L6-v2: 30,522 x 384, 45 of its
87 MB; RoBERTa-base: 50,265 x 768, 147 of its 476 MB) while one task's texts use a few thousand
pieces. The stage keeps the rows named by :func:`recipes.ml.vocabulary.choose_vocabulary`,
rewrites the tokenizer (its vocabulary, a BPE's merges, a Unigram's scores; same normalizer) and
slices the embedding in the new id order, so ``pipeline()``, ``from_pretrained`` and the ONNX
export load the result unchanged. A text whose pieces were all kept gets exactly the logits it
got before; a word that lost its piece is split into smaller kept pieces, which the model never
saw in training: the test split measures what that costs (it is read for the report only, never
to choose the rows).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import cache
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ..plan.bounds import Text
from .base import Publishing, StageContext, StageSpec, register


class PruneVocabSpec(StageSpec):
    """Trim ``input``'s vocabulary to the pieces its data needs and slice its embedding to match.

    Unstructured zeros make no dense PyTorch or ONNX Runtime kernel faster, so this stage
    removes whole embedding rows: the vocabulary embedding is most of a small encoder, while one
    task's texts use a few thousand pieces. It keeps the special tokens; every piece the train
    split uses at least ``min_count`` times; the single-character pieces (WordPiece: plain and
    ``##``; Unigram: one character; ``characters``: ``all`` of the vocabulary's, ``seen`` those
    of characters in the train texts or the word list, ``none``), so that a word splits into
    pieces rather than [UNK]; a byte-level BPE's 256 byte tokens, always, so that no text has an
    unknown (and a Unigram's byte-fallback pieces, if it has them); the pieces of the
    ``top_words`` most frequent words of ``language`` (the ``wordfreq`` package; 0: none); and
    for a BPE, the tokens each kept token is merged from, recursively, so that every kept token
    can still be made and a BPE keeps exactly the merges whose parts and result are kept.

    ``input`` is a PyTorch fp32 classifier (a transformer or a ``distill-static`` student, whose
    table is its whole vocabulary cost) with a fast tokenizer (``tokenizer.json``) of one of
    three kinds, told from the tokenizer itself: WordPiece (BERT, DistilBERT, MiniLM), byte-level
    BPE (RoBERTa, ModernBERT, GPT-2) or Unigram (SentencePiece: ALBERT, DeBERTa-v2, XLM-R); any
    other (a character BPE such as Llama's, WordLevel) is refused. No retraining. The stage
    rewrites the tokenizer with new contiguous ids (the vocabulary; a BPE's merges, a Unigram's
    pieces with their scores; special tokens keep their roles; same normalizer and
    pre-tokenizer) and the embedding in the new id order, so ``pipeline()``, ``from_pretrained``
    and the ONNX export load the result unchanged; a text whose pieces were all kept gets the
    same pieces and logits as before. The record holds the tokenizer's kind, the rows kept (by
    rule), the embedding MB saved, and on the test split (report only, never used to choose rows)
    the share of texts tokenized differently, the share whose decoded text changed (something
    lost), the [UNK] rate, the pieces per text and the accuracy before and after. The card shows
    what was kept.

    .. code-block:: yaml

        stages:
          - name: trim
            type: prune-vocab
            input: teacher
            top_words: 20000       # + pieces of the 20k most frequent English words
            min_count: 1
            characters: all
    """

    type: Literal["prune-vocab"]
    input: Text = Field(
        description="A PyTorch fp32 classifier with a WordPiece, byte-level BPE or Unigram tokenizer: a key of "
        "`models` or an earlier stage."
    )
    min_count: int = Field(
        1, ge=1, le=1_000_000, description="Times the train split must use a piece for it to be kept."
    )
    characters: Literal["all", "seen", "none"] = Field(
        "all",
        description="Single-character pieces kept (WordPiece, Unigram): all, those of characters seen, or none; "
        "a byte-level BPE keeps its 256 byte tokens whatever this says.",
    )
    top_words: int = Field(0, ge=0, le=1_000_000, description="Most frequent words whose pieces are kept; 0: none.")
    language: Text = Field("en", description="wordfreq language code of the word list.")
    max_length: int = Field(
        128, ge=1, le=8192, description="Tokens per text in the test-split report; longer texts are truncated."
    )
    keeps_layers: ClassVar[bool] = True  # its model has its input's layers (checked in recipes.plan.preflight)

    @field_validator("language")
    @classmethod
    def _wordfreq_language(cls, v: str) -> str:
        known = wordfreq_languages()
        if v not in known:
            close = difflib.get_close_matches(v.lower().split("-")[0].split("_")[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"language {v!r} has no wordfreq word list{hint}; allowed: {', '.join(known)}")
        return v

    def refs(self) -> dict[str, str]:
        return {"input": self.input}

    def source_problem(self, role: str, source) -> str | None:
        """A static student with hashed bigrams, when it is the direct input (through a
        calibrate-oos stage, the stage itself refuses it before any work)."""
        if "bigrams" in (traits := source.output_traits()):
            return f"{source.name!r} has {traits['bigrams']}: {BIGRAM_IDS}"
        return None

    def tokenizer_problems(self, problem_of: Callable[[str], str | None]) -> list[str]:
        """What would stop the stage once its input is trained: a tokenizer it cannot trim.
        ``problem_of(ref)`` is :func:`recipes.ml.vocabulary.supported_tokenizer` of the model the
        tokenizer of ``ref`` comes from (a stage's model has its input's tokenizer); None when fine
        or unknown."""
        reason = problem_of(self.input)
        return (
            [f"stage {self.name!r} cannot trim the tokenizer of its input {self.input!r}: {reason}"] if reason else []
        )


@cache
def wordfreq_languages() -> list[str]:
    """The language codes wordfreq has a word list for (``en``, ``de``, ``zh``, ...)."""
    from wordfreq import available_languages

    return sorted(available_languages())


#: What the model card and the Hub repo take from this stage type (see :class:`.base.Publishing`).
PUBLISHING = Publishing(
    tag="pruning",
    phrase="vocabulary trimmed to the pieces of the train split (+ top {top_words} words, characters: {characters})",
    repo_dir="",
    usage="usage/pytorch.md.j2",
    card_section="kept",
)


LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "wordfreq")
#: Why a static student with hashed bigrams cannot be trimmed.
BIGRAM_IDS = (
    "its bigram table is indexed by a hash of the pieces' ids, which trimming renumbers; "
    "trim the teacher before distill-static instead"
)


@register("prune-vocab", PruneVocabSpec, libraries=LIBRARIES, publishing=PUBLISHING)
def run(spec: PruneVocabSpec, ctx: StageContext) -> dict:
    from transformers import AutoTokenizer

    from ..measure.metrics import classification_metrics
    from ..measure.size import weights_size_mb
    from ..ml.modelio import auto_classifier, predictions, save_pretrained_model
    from ..ml.pruning import kept_record
    from ..ml.vocabulary import (
        choose_vocabulary,
        save_trimmed_tokenizer,
        tokenization_changes,
        top_words,
        trim_embeddings,
    )

    source = ctx.inputs["input"]
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = auto_classifier(source)  # this project's static students too
    if getattr(model.config, "bigram_buckets", 0):
        raise ValueError(f"prune-vocab: input {spec.input!r}: {BIGRAM_IDS}")
    words = top_words(spec.language, spec.top_words) if spec.top_words else []
    choice = choose_vocabulary(
        tokenizer, list(ctx.data.split("train")["text"]), spec.min_count, spec.characters, words
    )
    test = ctx.data.split("test")
    texts, labels = list(test["text"]), list(test["label"])
    before = predictions(model, tokenizer, texts, spec.max_length)
    embedding = model.get_input_embeddings().weight
    rows, row_bytes = embedding.shape[0], embedding.shape[1] * embedding.element_size()

    trimmed = save_trimmed_tokenizer(tokenizer, choice.keep, ctx.out_dir)
    trim_embeddings(model, choice.keep)
    save_pretrained_model(model, trimmed, ctx.out_dir)
    emitted = max((max(ids, default=0) for ids in trimmed(texts or [""])["input_ids"]), default=0)
    if emitted >= len(choice.keep):  # a bug, never a setting: stop before anything loads it
        raise RuntimeError(f"the trimmed tokenizer emits id {emitted}, past the {len(choice.keep)} rows kept")
    after = predictions(model, trimmed, texts, spec.max_length)
    acc_before = classification_metrics(before, labels, ctx.data.oos_id)
    acc_after = classification_metrics(after, labels, ctx.data.oos_id)
    kept, total = len(choice.keep), choice.total
    ctx.log.info(
        "Kept %d of %d %s vocabulary rows (%s); test accuracy %.4f -> %.4f",
        kept,
        total,
        choice.kind,
        ", ".join(f"{k} +{v}" for k, v in choice.added_by.items()),
        acc_before["accuracy"],
        acc_after["accuracy"],
    )
    return {
        "tokenizer_kind": choice.kind,
        "vocab_kept": kept,
        "vocab_total": total,
        "kept_by_rule": choice.added_by,
        "embedding_mb_saved": (rows - kept) * row_bytes / 2**20,  # some embeddings have rows past the vocabulary
        **weights_size_mb(ctx.out_dir),
        "test": {
            **tokenization_changes(tokenizer, trimmed, texts),
            "accuracy_before": acc_before["accuracy"],
            "accuracy_after": acc_after["accuracy"],
            "accuracy_delta": acc_after["accuracy"] - acc_before["accuracy"],
            "before": acc_before,
            "after": acc_after,
        },
        "kept": kept_record(vocabulary=(kept, total)),
    }
