"""Tokenizers of each family, built here from CLINC150's train texts (nothing downloads): WordPiece
(BERT, DistilBERT, ELECTRA: the MiniLM vocabulary), byte-level BPE (RoBERTa, ModernBERT) and a
SentencePiece-style Unigram (ALBERT, DeBERTa-v2). Small vocabularies, so tests stay fast; each is
saved with ``save_pretrained`` under the family's own fast tokenizer class, so ``AutoTokenizer``
loads it as the family's checkpoints would be loaded."""

from __future__ import annotations

import functools
from pathlib import Path

from .tiny import CLINC_DIR, minilm_dir

#: The kinds of vocabulary, and the families that use each.
WORDPIECE, BYTE_BPE, UNIGRAM = "wordpiece", "byte-level-bpe", "unigram"
VOCAB_SIZE = 2000


@functools.cache
def clinc_train_texts() -> tuple[str, ...]:
    import pyarrow.parquet as pq

    table = pq.read_table(next((CLINC_DIR / "plus").glob("train-*.parquet")), columns=["text"])
    return tuple(table.column("text").to_pylist())


def wordpiece_tokenizer(out_dir: Path, fast_class: str = "BertTokenizerFast") -> Path:
    """The MiniLM (BERT uncased) vocabulary, saved as ``fast_class`` (DistilBertTokenizerFast, ...)."""
    import transformers

    cls = getattr(transformers, fast_class)
    cls.from_pretrained(minilm_dir()).save_pretrained(out_dir)
    return Path(out_dir)


def byte_bpe_tokenizer(out_dir: Path, fast_class: str = "RobertaTokenizerFast", bert_specials: bool = False) -> Path:
    """A byte-level BPE trained on the train texts; RoBERTa's special tokens (``<s>``, ``</s>``...) or,
    with ``bert_specials``, BERT's (``[CLS]``, ``[SEP]``...: ModernBERT's)."""
    import transformers
    from tokenizers import ByteLevelBPETokenizer, processors

    specials = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        if bert_specials
        else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(clinc_train_texts(), vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False)
    cls_token, sep_token = (specials[2], specials[3]) if bert_specials else (specials[0], specials[2])
    bpe.post_processor = processors.RobertaProcessing(
        (sep_token, bpe.token_to_id(sep_token)), (cls_token, bpe.token_to_id(cls_token)), add_prefix_space=True
    )
    names = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), specials[:5]))
    if not bert_specials:
        names = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                 "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"}  # fmt: skip
    inputs = {"model_input_names": ["input_ids", "attention_mask"]}  # no token types: RoBERTa, ModernBERT
    tokenizer = getattr(transformers, fast_class)(tokenizer_object=bpe, **names, **inputs)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def unigram_tokenizer(out_dir: Path, fast_class: str = "AlbertTokenizerFast") -> Path:
    """A SentencePiece-style Unigram trained on the train texts (``▁`` marks a word start), with
    ``[CLS] ... [SEP]`` around each text, saved as ``fast_class`` (AlbertTokenizerFast,
    DebertaV2TokenizerFast)."""
    import transformers
    from tokenizers import SentencePieceUnigramTokenizer, normalizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    unigram = SentencePieceUnigramTokenizer()
    unigram.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    unigram.train_from_iterator(
        clinc_train_texts(),
        vocab_size=VOCAB_SIZE,
        special_tokens=specials,
        unk_token="[UNK]",
        show_progress=False,
    )
    unigram.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", unigram.token_to_id("[CLS]")), ("[SEP]", unigram.token_to_id("[SEP]"))],
    )
    names = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), specials))
    tokenizer = getattr(transformers, fast_class)(tokenizer_object=unigram, **names)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
