"""Trimming a classifier's vocabulary: which rows to keep, the tokenizer rebuilt with only those,
the embedding sliced to match (the ``prune-vocab`` stage).

Three kinds of fast tokenizer, told apart by ``tokenizer.json`` alone (:func:`tokenizer_kind`):
WordPiece (BERT, DistilBERT, MiniLM), byte-level BPE (RoBERTa, ModernBERT, GPT-2: a BPE whose
pre-tokenizer is ``ByteLevel``) and Unigram (SentencePiece: ALBERT, DeBERTa-v2, XLM-R). Which rows
to keep (:func:`choose_vocabulary`), the tokenizer rebuilt with only those
(:func:`save_trimmed_tokenizer`: its vocabulary, merges or scores rewritten with new contiguous
ids, every other setting as it was) and the embedding sliced to match (:func:`trim_embeddings`);
what it changed on real texts (:func:`tokenization_changes`). :func:`supported_tokenizer` tells,
from a model folder's files, whether its tokenizer can be trimmed at all, before any stage runs.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

WORDPIECE, BYTE_LEVEL_BPE, UNIGRAM = "WordPiece", "byte-level BPE", "Unigram"
NOT_FAST = "prune-vocab needs a fast tokenizer (tokenizer.json); this model has only a slow one"
SUPPORTED = (
    "WordPiece (BERT, DistilBERT, MiniLM), byte-level BPE (RoBERTa, ModernBERT, GPT-2) and "
    "Unigram (SentencePiece: ALBERT, DeBERTa-v2, XLM-R)"
)


@dataclass
class VocabularyChoice:
    """Old ids to keep (ascending: special tokens keep their low ids) and what each rule added."""

    keep: list[int]
    total: int
    added_by: dict[str, int]  # rule -> pieces it added that no earlier rule had
    kind: str = WORDPIECE


def tokenizer_kind(state: dict) -> str:
    """:data:`WORDPIECE`, :data:`BYTE_LEVEL_BPE` or :data:`UNIGRAM`, from ``tokenizer.json`` (as a
    dict); raises ValueError naming what the tokenizer is when it is none of those."""
    kind = (state.get("model") or {}).get("type")
    if kind == "WordPiece":
        return WORDPIECE
    if kind == "Unigram":
        return UNIGRAM
    if kind == "BPE" and _byte_level(state.get("pre_tokenizer")):
        return BYTE_LEVEL_BPE
    what = (
        "a BPE on characters, not bytes (no ByteLevel pre-tokenizer: SentencePiece BPE such as Llama's)"
        if kind == "BPE"
        else f"a {kind or 'model of unknown type'}"
    )
    raise ValueError(
        f"prune-vocab trims {SUPPORTED} tokenizers; this one is {what}, whose vocabulary it cannot rebuild"
    )


def _byte_level(pre_tokenizer: dict | None) -> bool:
    """Whether the pre-tokenizer maps text to bytes (``ByteLevel``, alone or in a ``Sequence``)."""
    if not pre_tokenizer:
        return False
    if pre_tokenizer.get("type") == "Sequence":
        return any(_byte_level(p) for p in pre_tokenizer.get("pretokenizers", []))
    return pre_tokenizer.get("type") == "ByteLevel"


def tokenizer_state(tokenizer) -> tuple[dict, str]:
    """The fast tokenizer's ``tokenizer.json`` as a dict, and its kind (:func:`tokenizer_kind`)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(NOT_FAST)
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    return state, tokenizer_kind(state)


def supported_tokenizer(folder) -> str | None:
    """Why the tokenizer in model folder ``folder`` cannot be trimmed; None when it can.

    Reads ``tokenizer.json`` only, so a plan can ask before any stage runs. A folder without one
    (a slow tokenizer's files only) is loaded as the stage would load it, converted to a fast one."""
    path = Path(folder) / "tokenizer.json"
    if path.is_file():
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return f"cannot read {path} ({err})"
    else:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError, ImportError) as err:
            return f"cannot load the tokenizer of {folder} ({err})"
        if not getattr(tokenizer, "is_fast", False):
            return NOT_FAST
        state = json.loads(tokenizer.backend_tokenizer.to_str())
    try:
        tokenizer_kind(state)
    except ValueError as err:
        return str(err)
    return None


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
    """The rows to keep, by rule: ``special`` and added tokens; ``train``, every piece the train
    texts use at least ``min_count`` times; ``characters``, the single-character pieces (WordPiece:
    plain and ``##``; Unigram: one character, ``▁`` among them; ``characters="all"`` every one in
    the vocabulary, ``"seen"`` those of characters in the train texts or ``words``), so that any
    word still splits into pieces rather than [UNK]; ``bytes``, the 256 byte tokens of a byte-level
    BPE (whatever ``characters`` says: with them no text has an unknown) or the ``<0x..>`` pieces of
    a Unigram with byte fallback; ``words``, every piece of ``words`` (e.g. the most frequent words
    of the language), each as it appears after a space; and for a BPE ``merges``, the parts each kept
    token is merged from, recursively (:func:`_merge_parts`).

    The unknown token is kept too and, for a Unigram, the lowest-scored piece: the tokenizers
    library derives the unknown token's penalty from the lowest score, so keeping it keeps every
    segmentation of a text whose pieces were all kept."""
    state, kind = tokenizer_state(tokenizer)
    model = state["model"]
    vocab = _vocab(model)
    keep: set[int] = set()
    added_by: dict[str, int] = {}

    def add(rule: str, ids) -> None:
        before = len(keep)
        keep.update(int(i) for i in ids)
        added_by[rule] = len(keep) - before

    add("special", [t["id"] for t in state.get("added_tokens", [])] + list(tokenizer.all_special_ids))
    counts = Counter(i for ids in _encode(tokenizer, train_texts) for i in ids)
    add("train", [i for i, c in counts.items() if c >= min_count])
    if kind != BYTE_LEVEL_BPE and characters != "none":
        prefix = model.get("continuing_subword_prefix") if kind == WORDPIECE else None
        singles = {p: i for p, i in vocab.items() if _character(p, prefix) is not None}
        if characters == "seen":
            seen = _seen_characters(tokenizer, [*train_texts, *words])
            singles = {p: i for p, i in singles.items() if _character(p, prefix) in seen}
        add("characters", singles.values())
    if kind == BYTE_LEVEL_BPE or model.get("byte_fallback"):
        add("bytes", [vocab[p] for p in _byte_pieces(kind) if p in vocab])
    if words:
        add("words", [i for ids in _encode(tokenizer, [" " + w for w in words]) for i in ids])
    if kind == BYTE_LEVEL_BPE:
        add("merges", _merge_parts(model, vocab, keep))
    keep.update(_always_kept(model, kind, vocab))
    return VocabularyChoice(sorted(keep), len(vocab), added_by, kind)


def _vocab(model: dict) -> dict[str, int]:
    """piece -> id of a ``tokenizer.json`` model (a Unigram lists ``[piece, score]`` in id order)."""
    vocab = model["vocab"]
    return {piece: i for i, (piece, _score) in enumerate(vocab)} if isinstance(vocab, list) else dict(vocab)


def _character(piece: str, prefix: str | None) -> str | None:
    """The one character ``piece`` stands for (``a`` or, with WordPiece's ``prefix``, ``##a``), or None."""
    bare = piece.removeprefix(prefix) if prefix and len(piece) > 1 else piece
    return bare if len(bare) == 1 else None


def _byte_pieces(kind: str) -> list[str]:
    """A byte-level BPE's 256 byte tokens, or a Unigram's byte-fallback pieces ``<0x00>``..``<0xFF>``."""
    if kind == BYTE_LEVEL_BPE:
        from tokenizers.pre_tokenizers import ByteLevel

        return ByteLevel.alphabet()
    return [f"<0x{b:02X}>" for b in range(256)]


def _seen_characters(tokenizer, texts: list[str]) -> set[str]:
    """The characters of ``texts`` as the model sees them: normalized, then pre-tokenized (so a
    SentencePiece word-start ``▁`` is one of them)."""
    backend = tokenizer.backend_tokenizer
    seen: set[str] = set()
    for text in texts:
        text = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        words = backend.pre_tokenizer.pre_tokenize_str(text) if backend.pre_tokenizer is not None else [(text, None)]
        seen.update(ch for word, _ in words for ch in word)
    return seen


def _merges(model: dict) -> list[tuple[str, str]]:
    """A BPE's merges as pairs (``tokenizer.json`` writes ``["a", "b"]``, or ``"a b"`` before tokenizers 0.20)."""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in model["merges"]]


def _merged(model: dict, a: str, b: str) -> str:
    """The token the merge of ``a`` and ``b`` makes."""
    prefix = model.get("continuing_subword_prefix") or ""
    return a + (b[len(prefix) :] if prefix and b.startswith(prefix) else b)


def _merge_parts(model: dict, vocab: dict[str, int], keep: set[int]) -> set[int]:
    """The ids of the parts every kept token is merged from, recursively, that ``keep`` lacks.

    BPE makes a token only by merging two tokens it made first: ``Ġhello`` may come from ``Ġhell`` +
    ``o``, which come from ``Ġhe`` + ``ll``..., intermediate tokens no text ends with. The trimmed
    BPE keeps a merge only if its parts and its result are kept; without the parts, a kept token
    could never be made again (a dead row) and the texts that used it would split differently. So
    the parts are kept (a token made by several merges keeps the parts of each), rather than the
    token dropped: then every merge a text used is kept, and since dropping merges that were not
    applied never changes which merge BPE applies next, a text whose tokens were all kept gets
    exactly its old tokens."""
    made_of: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for a, b in _merges(model):
        made_of[_merged(model, a, b)].append((a, b))
    piece_of = {i: p for p, i in vocab.items()}
    todo = [piece_of[i] for i in keep if i in piece_of]
    added: set[int] = set()
    while todo:
        for pair in made_of.get(todo.pop(), ()):
            for part in pair:
                if vocab[part] not in keep and vocab[part] not in added:
                    added.add(vocab[part])
                    todo.append(part)
    return added


def _always_kept(model: dict, kind: str, vocab: dict[str, int]) -> set[int]:
    """The unknown token and, for a Unigram, its lowest-scored piece (see :func:`choose_vocabulary`)."""
    if kind == UNIGRAM:
        unk = {model["unk_id"]} if model.get("unk_id") is not None else set()
        scores = [score for _piece, score in model["vocab"]]
        return unk | ({scores.index(min(scores))} if scores else set())
    unk = vocab.get(model.get("unk_token") or "")
    return {unk} if unk is not None else set()


def _encode(tokenizer, texts: list[str], batch: int = 1024) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(texts), batch):
        out += tokenizer(texts[start : start + batch], add_special_tokens=False)["input_ids"]
    return out


def _remap_ids(node, new_id: dict[int, int]):
    """``tokenizer.json``'s post-processor and padding with every token id renumbered."""
    if isinstance(node, list):
        if len(node) == 2 and isinstance(node[0], str) and isinstance(node[1], int):  # Bert/RobertaProcessing
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


def _trimmed_model(model: dict, kind: str, new_id: dict[int, int]) -> dict:
    """``tokenizer.json``'s model with only the kept pieces, renumbered: WordPiece and BPE their
    vocabulary (a BPE keeps the merges whose parts and result are kept, in their order), Unigram
    its ``[piece, score]`` list in the new order, scores as they were, and ``unk_id``."""
    model = dict(model)
    if kind == UNIGRAM:
        # ids ascending: the kept pieces take new ids 0..m-1, added tokens past the pieces follow them
        model["vocab"] = [model["vocab"][old] for old in new_id if old < len(model["vocab"])]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
        return model
    piece_of = {i: p for p, i in model["vocab"].items()}
    model["vocab"] = {piece_of[old]: new for old, new in new_id.items() if old in piece_of}
    if kind == BYTE_LEVEL_BPE:
        kept = model["vocab"]
        model["merges"] = [
            m
            for m, (a, b) in zip(model["merges"], _merges(model))
            if a in kept and b in kept and _merged(model, a, b) in kept
        ]
    return model


def save_trimmed_tokenizer(tokenizer, keep: list[int], out_dir: Path):
    """Write ``tokenizer``, keeping only the rows ``keep`` (old ids, ascending) renumbered
    0..len-1 in that order, to ``out_dir``; return the tokenizer loaded back from there.

    The ``tokenizer.json`` keeps its normalizer (lower-casing, accents, Chinese characters),
    pre-tokenizer, decoder and model settings; special tokens keep their roles under their new
    ids (added tokens, post-processor, padding). The slow tokenizer's files are written from the
    trimmed one (``vocab.txt``; ``vocab.json`` and ``merges.txt``), so they agree; a SentencePiece
    ``.model`` file is not carried over, since it would still describe the old vocabulary (the fast
    tokenizer, which ``AutoTokenizer`` loads, needs only ``tokenizer.json``)."""
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    state, kind = tokenizer_state(tokenizer)
    new_id = {old: new for new, old in enumerate(keep)}
    dropped_special = [t["content"] for t in state.get("added_tokens", []) if t["id"] not in new_id]
    if dropped_special:
        raise ValueError(f"the special tokens {dropped_special} would be dropped; they must be kept")
    state["model"] = _trimmed_model(state["model"], kind, new_id)
    for token in state.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    state["post_processor"] = _remap_ids(state.get("post_processor"), new_id)
    state["padding"] = _remap_ids(state.get("padding"), new_id)
    tokenizer.save_pretrained(out_dir, legacy_format=False)  # settings only: no file of the old vocabulary
    (out_dir / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    config_file = out_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    decoder = config.get("added_tokens_decoder") or {}
    config["added_tokens_decoder"] = {str(new_id[int(i)]): v for i, v in decoder.items() if int(i) in new_id}
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    trimmed = AutoTokenizer.from_pretrained(out_dir)
    trimmed.save_pretrained(out_dir)  # every file written again by transformers, the slow ones from the trimmed model
    return trimmed


def trim_embeddings(model, keep: list[int]) -> None:
    """Keep the embedding rows ``keep`` (new id i = old row ``keep[i]``), and the rows and bias of
    an output embedding (a language-model head, tied or not), and renumber the config's special
    token ids; ``config.vocab_size`` follows.

    The kept rows are moved to the front, then ``resize_token_embeddings`` cuts the rest, so each
    architecture's own code resizes and re-ties its heads. A model that numbers positions from
    its pad token's id (RoBERTa: position ids start after it) is refused if that id would change."""
    import torch

    new_id = {o: n for n, o in enumerate(keep)}
    _refuse_moved_position_padding(model, new_id)
    embedding = model.get_input_embeddings()
    old_padding = embedding.padding_idx
    output = model.get_output_embeddings()
    rows = [embedding.weight] + ([output.weight, output.bias] if output is not None else [])
    index = torch.tensor(keep, dtype=torch.long)
    with torch.no_grad():
        for tensor in {id(t): t for t in rows if t is not None}.values():  # a tied head shares the input's
            tensor[: len(keep)] = tensor[index]
    model.resize_token_embeddings(len(keep))
    model.get_input_embeddings().padding_idx = new_id.get(old_padding) if old_padding is not None else None
    config = model.config
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            if value not in new_id:
                raise ValueError(f"config.{attr} {value} is not a kept row; keep the special tokens")
            setattr(config, attr, new_id[value])


def _refuse_moved_position_padding(model, new_id: dict[int, int]) -> None:
    embeddings = getattr(model.base_model, "embeddings", None)
    padding = getattr(embeddings, "padding_idx", None)
    if isinstance(padding, int) and new_id.get(padding) != padding:
        raise ValueError(
            f"this model numbers its positions from its pad token's id {padding} (RoBERTa-style), which the trimmed "
            f"vocabulary would move to {new_id.get(padding)}; keep every id up to {padding}"
        )


def tokenization_changes(old_tokenizer, new_tokenizer, texts: list[str]) -> dict[str, float]:
    """Share of ``texts`` whose pieces differ after trimming, share whose decoded text differs
    (something lost: an [UNK], a dropped character), and the [UNK] share of pieces before/after."""
    old, new = _encode(old_tokenizer, texts), _encode(new_tokenizer, texts)
    old_unk, new_unk = old_tokenizer.unk_token_id, new_tokenizer.unk_token_id
    old_pieces = [old_tokenizer.convert_ids_to_tokens(ids) for ids in old]
    new_pieces = [new_tokenizer.convert_ids_to_tokens(ids) for ids in new]
    changed = sum(a != b for a, b in zip(old_pieces, new_pieces))
    decoded = sum(a != b for a, b in zip(old_tokenizer.batch_decode(old), new_tokenizer.batch_decode(new)))
    n_old, n_new = max(1, sum(map(len, old))), max(1, sum(map(len, new)))
    return {
        "texts_changed": changed / max(1, len(texts)),
        "decoded_changed": decoded / max(1, len(texts)),
        "unk_before": sum(ids.count(old_unk) for ids in old) / n_old,
        "unk_after": sum(ids.count(new_unk) for ids in new) / n_new,
        "pieces_per_text_before": n_old / max(1, len(texts)),
        "pieces_per_text_after": n_new / max(1, len(texts)),
    }
