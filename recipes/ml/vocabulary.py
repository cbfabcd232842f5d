"""Trimming a classifier's vocabulary: which rows to keep, the tokenizer rebuilt with only those,
the embedding sliced to match (the ``prune-vocab`` stage).

Which WordPiece rows to keep (:func:`choose_vocabulary`), the tokenizer rebuilt with only those
(:func:`save_trimmed_tokenizer`: its ``tokenizer.json`` and ``vocab.txt`` rewritten, every other
setting as it was) and the embedding sliced to match (:func:`trim_embeddings`); what it changed
on real texts (:func:`tokenization_changes`, :func:`predictions`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass
class VocabularyChoice:
    """Old ids to keep (ascending: special tokens keep their low ids) and what each rule added."""

    keep: list[int]
    total: int
    added_by: dict[str, int]  # rule -> pieces it added that no earlier rule had


def wordpiece_state(tokenizer) -> dict:
    """The fast tokenizer's ``tokenizer.json`` as a dict; refuses anything but WordPiece."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("prune-vocab needs a fast tokenizer (tokenizer.json); this model has only a slow one")
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    kind = state["model"].get("type")
    if kind != "WordPiece":
        raise ValueError(
            f"prune-vocab rebuilds WordPiece tokenizers (BERT, DistilBERT, MiniLM); this one is {kind}, "
            "whose merges or scores it cannot trim"
        )
    return state


def top_words(language: str, n: int) -> list[str]:
    """The ``n`` most frequent words of ``language`` (the ``wordfreq`` package)."""
    from wordfreq import top_n_list

    words = top_n_list(language, n)
    if not words:
        raise ValueError(f"wordfreq has no word list for language {language!r}")
    return words


def choose_vocabulary(
    tokenizer,
    train_texts: list[str],
    min_count: int = 1,
    characters: str = "all",
    words: list[str] = (),
) -> VocabularyChoice:
    """The rows to keep: special and added tokens; every piece the train texts use at least
    ``min_count`` times; the single-character pieces (plain and ``##``: ``characters="all"``
    every one in the vocabulary, ``"seen"`` those of characters in the train texts or
    ``words``), so that any word still splits into pieces rather than [UNK]; and every piece
    of ``words`` (e.g. the most frequent words of the language)."""
    state = wordpiece_state(tokenizer)
    vocab: dict[str, int] = state["model"]["vocab"]
    prefix = state["model"].get("continuing_subword_prefix", "##")
    keep: set[int] = set()
    added_by: dict[str, int] = {}

    def add(rule: str, ids) -> None:
        before = len(keep)
        keep.update(int(i) for i in ids)
        added_by[rule] = len(keep) - before

    add("special", [t["id"] for t in state.get("added_tokens", [])] + list(tokenizer.all_special_ids))
    counts = Counter(i for ids in _encode(tokenizer, train_texts) for i in ids)
    add("train", [i for i, c in counts.items() if c >= min_count])
    if characters != "none":
        singles = {p: i for p, i in vocab.items() if len(p.removeprefix(prefix)) == 1 or len(p) == 1}
        if characters == "seen":
            normalize = _normalizer(tokenizer)
            seen = {ch for text in [*train_texts, *words] for ch in normalize(text)}
            singles = {p: i for p, i in singles.items() if (p if len(p) == 1 else p.removeprefix(prefix)) in seen}
        add("characters", singles.values())
    if words:
        add("words", [i for ids in _encode(tokenizer, list(words)) for i in ids])
    unk = vocab.get(state["model"].get("unk_token", "[UNK]"))
    if unk is not None:
        keep.add(unk)
    return VocabularyChoice(sorted(keep), len(vocab), added_by)


def _encode(tokenizer, texts: list[str], batch: int = 1024) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(texts), batch):
        out += tokenizer(texts[start : start + batch], add_special_tokens=False)["input_ids"]
    return out


def _normalizer(tokenizer):
    normalizer = tokenizer.backend_tokenizer.normalizer
    return normalizer.normalize_str if normalizer is not None else (lambda text: text)


def _remap_ids(node, new_id: dict[int, int]):
    """``tokenizer.json``'s post-processor and padding with every token id renumbered."""
    if isinstance(node, list):
        if len(node) == 2 and isinstance(node[0], str) and isinstance(node[1], int):  # BertProcessing: [token, id]
            return [node[0], new_id[node[1]]]
        return [_remap_ids(item, new_id) for item in node]
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                out[key] = [new_id[i] for i in value]
            elif key == "pad_id" and isinstance(value, int):
                out[key] = new_id[value]
            else:
                out[key] = _remap_ids(value, new_id)
        return out
    return node


def save_trimmed_tokenizer(tokenizer, keep: list[int], out_dir: Path):
    """Write ``tokenizer``, keeping only the rows ``keep`` (old ids, ascending) renumbered
    0..len-1 in that order, to ``out_dir``; return the tokenizer loaded back from there.

    The ``tokenizer.json`` keeps its normalizer (lower-casing, accents, Chinese characters),
    pre-tokenizer, decoder and WordPiece settings; ``vocab.txt`` lists the same pieces, so the
    slow tokenizer agrees. Special tokens keep their roles under their new ids."""
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    state = wordpiece_state(tokenizer)
    new_id = {old: new for new, old in enumerate(keep)}
    dropped_special = [t["content"] for t in state.get("added_tokens", []) if t["id"] not in new_id]
    if dropped_special:
        raise ValueError(f"the special tokens {dropped_special} would be dropped; they must be kept")
    piece_of = {i: p for p, i in state["model"]["vocab"].items()}
    state["model"]["vocab"] = {piece_of[old]: new for old, new in new_id.items()}
    for token in state.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    state["post_processor"] = _remap_ids(state.get("post_processor"), new_id)
    state["padding"] = _remap_ids(state.get("padding"), new_id)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False))
    (out_dir / "vocab.txt").write_text("".join(piece_of[old] + "\n" for old in keep), encoding="utf-8")
    config_file = out_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    decoder = config.get("added_tokens_decoder") or {}
    config["added_tokens_decoder"] = {str(new_id[int(i)]): v for i, v in decoder.items() if int(i) in new_id}
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    trimmed = AutoTokenizer.from_pretrained(out_dir)
    trimmed.save_pretrained(out_dir)  # every file written again by transformers, consistently
    return trimmed


def trim_embeddings(model, keep: list[int]) -> None:
    """Slice the input embedding to the rows ``keep`` (new id i = old row ``keep[i]``) and renumber
    the config's special token ids; ``config.vocab_size`` follows."""
    import torch

    old = model.get_input_embeddings()
    new_id = {o: n for n, o in enumerate(keep)}
    index = torch.tensor(keep, dtype=torch.long)
    padding_idx = new_id.get(old.padding_idx) if old.padding_idx is not None else None
    new = torch.nn.Embedding(len(keep), old.embedding_dim, padding_idx=padding_idx, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[index])
    model.set_input_embeddings(new)
    config = model.config
    config.vocab_size = len(keep)
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            if value not in new_id:
                raise ValueError(f"config.{attr} {value} is not a kept row; keep the special tokens")
            setattr(config, attr, new_id[value])


def tokenization_changes(old_tokenizer, new_tokenizer, texts: list[str]) -> dict[str, float]:
    """Share of ``texts`` whose pieces differ after trimming, and the [UNK] share of pieces before/after."""
    old, new = _encode(old_tokenizer, texts), _encode(new_tokenizer, texts)
    old_unk, new_unk = old_tokenizer.unk_token_id, new_tokenizer.unk_token_id
    old_pieces = [old_tokenizer.convert_ids_to_tokens(ids) for ids in old]
    new_pieces = [new_tokenizer.convert_ids_to_tokens(ids) for ids in new]
    changed = sum(a != b for a, b in zip(old_pieces, new_pieces))
    n_old, n_new = max(1, sum(map(len, old))), max(1, sum(map(len, new)))
    return {
        "texts_changed": changed / max(1, len(texts)),
        "unk_before": sum(ids.count(old_unk) for ids in old) / n_old,
        "unk_after": sum(ids.count(new_unk) for ids in new) / n_new,
        "pieces_per_text_before": n_old / max(1, len(texts)),
        "pieces_per_text_after": n_new / max(1, len(texts)),
    }
