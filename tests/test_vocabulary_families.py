"""Vocabulary trimming for each kind of tokenizer, on tiny models: WordPiece (a BERT), byte-level BPE
(a RoBERTa) and Unigram (an ALBERT), their tokenizers built from CLINC150's train texts
(:mod:`tests.tokenizers`). A text whose pieces were all kept gets the same pieces (renumbered) and
the same logits; other texts still tokenize, with no unknown where they had none (a byte-level BPE
loses nothing at all); the trimmed tokenizer and model reload; a BPE keeps every merge chain of a
kept token; a Unigram keeps its scores; any other kind is refused, before any stage runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recipes.ml.vocabulary import (
    BYTE_LEVEL_BPE,
    SUPPORTED,
    UNIGRAM,
    WORDPIECE,
    choose_vocabulary,
    save_trimmed_tokenizer,
    supported_tokenizer,
    trim_embeddings,
)
from recipes.stages.prune_vocab import PruneVocabSpec

from .tiny import clinc_dataset, minilm_dir, run_one_stage, tiny_bert
from .tokenizers import byte_bpe_tokenizer, clinc_train_texts, unigram_tokenizer

KINDS = (WORDPIECE, BYTE_LEVEL_BPE, UNIGRAM)
ODD_TEXTS = ["", "héllo wörld 東京 ☃", "zzzzqqqxxx", "a" * 300, "Ǆ ǅ ǆ ﬁ ﬂ", "@@@ ### $$$ 1234567890", "🙂🙃 emoji"]
WORDS = ["weather", "today", "umbrella"]
pytestmark = pytest.mark.timeout(300)


def tiny_classifier(kind: str, tokenizer_dir: Path, out_dir: Path, num_labels: int = 5) -> Path:
    """A random 2-layer classifier (hidden 32) of the family ``kind`` stands for, with the tokenizer in
    ``tokenizer_dir`` (vocabulary size and special ids its own), saved with it to ``out_dir``."""
    from transformers import (
        AlbertConfig,
        AlbertForSequenceClassification,
        AutoTokenizer,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}
    ids = {"pad_token_id": tokenizer.pad_token_id, "num_labels": num_labels, "vocab_size": len(tokenizer)}
    torch.manual_seed(0)
    if kind == BYTE_LEVEL_BPE:  # positions start after the pad id: 128 tokens need 130 rows
        config = RobertaConfig(**shape, **ids, max_position_embeddings=130, bos_token_id=0, eos_token_id=2)
        model = RobertaForSequenceClassification(config)
    else:
        config = AlbertConfig(**shape, **ids, embedding_size=16, max_position_embeddings=128)
        model = AlbertForSequenceClassification(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {
        WORDPIECE: minilm_dir(),
        BYTE_LEVEL_BPE: byte_bpe_tokenizer(root / "roberta"),
        UNIGRAM: unigram_tokenizer(root / "albert"),
    }


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory, tokenizer_dirs) -> dict[str, dict]:
    """Per kind: the model before (``before``) and after (``after``) trimming to the pieces of 200
    CLINC train texts and :data:`WORDS`, and the :class:`VocabularyChoice`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("trimmed")
    out = {}
    for kind in KINDS:
        if kind == WORDPIECE:
            before = tiny_bert(root / kind / "before", num_labels=5)
        else:
            before = tiny_classifier(kind, tokenizer_dirs[kind], root / kind / "before")
        tokenizer = AutoTokenizer.from_pretrained(before)
        model = AutoModelForSequenceClassification.from_pretrained(before)
        choice = choose_vocabulary(tokenizer, list(clinc_train_texts()[:200]), words=WORDS)
        after = root / kind / "after"
        trim_embeddings(model, choice.keep)
        model.save_pretrained(after)
        save_trimmed_tokenizer(tokenizer, choice.keep, after)
        out[kind] = {"before": before, "after": after, "choice": choice}
    return out


def loaded(folder: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder).eval()


def clinc_test_texts(n: int = 300) -> list[str]:
    import pyarrow.parquet as pq

    from .tiny import CLINC_DIR

    table = pq.read_table(next((CLINC_DIR / "plus").glob("test-*.parquet")), columns=["text"])
    return table.column("text").to_pylist()[:n]


@pytest.mark.parametrize("kind", KINDS)
def test_kept_texts_keep_their_pieces_and_logits(trimmed, kind):
    case = trimmed[kind]
    (old_tok, old), (new_tok, new) = loaded(case["before"]), loaded(case["after"])
    keep = case["choice"].keep
    new_id = {o: n for n, o in enumerate(keep)}
    assert case["choice"].kind == kind and new.config.vocab_size == len(keep) == len(new_tok) < len(old_tok)
    assert new.get_input_embeddings().weight.shape[0] == len(keep)
    texts = clinc_test_texts() + WORDS
    old_ids, new_ids = old_tok(texts)["input_ids"], new_tok(texts)["input_ids"]
    same = [i for i, ids in enumerate(old_ids) if all(t in new_id for t in ids)]
    assert 0 < len(same) < len(texts)  # 200 train texts' pieces: some test texts split anew
    assert all(new_ids[i] == [new_id[t] for t in old_ids[i]] for i in same)
    kept_texts = [texts[i] for i in same]
    with torch.no_grad():
        a = old(**old_tok(kept_texts, padding=True, return_tensors="pt")).logits
        b = new(**new_tok(kept_texts, padding=True, return_tensors="pt")).logits
    assert torch.allclose(a, b, atol=1e-5)
    for name in ("pad", "unk", "cls", "sep", "mask"):
        token = getattr(old_tok, f"{name}_token")
        assert new_tok.convert_ids_to_tokens(getattr(new_tok, f"{name}_token_id")) == token
    assert new.config.pad_token_id == new_tok.pad_token_id


@pytest.mark.parametrize("kind", KINDS)
def test_dropped_pieces_split_without_new_unknowns(trimmed, kind):
    (old_tok, _), (new_tok, _) = loaded(trimmed[kind]["before"]), loaded(trimmed[kind]["after"])
    texts = clinc_test_texts() + ODD_TEXTS
    old_ids = old_tok(texts, truncation=True, max_length=128)["input_ids"]
    new_ids = new_tok(texts, truncation=True, max_length=128)["input_ids"]
    assert max(max(ids) for ids in new_ids) < len(new_tok)
    unknown = [i for i, ids in enumerate(old_ids) if old_tok.unk_token_id in ids]
    assert all(new_tok.unk_token_id not in ids for i, ids in enumerate(new_ids) if i not in unknown)
    if kind == BYTE_LEVEL_BPE:  # every byte kept: nothing is lost, each text decodes as before
        assert not unknown and old_tok.batch_decode(old_ids) == new_tok.batch_decode(new_ids)
        assert "zzzzqqqxxx" in new_tok.decode(new_tok("zzzzqqqxxx")["input_ids"])


@pytest.mark.parametrize("kind", KINDS)
def test_trimmed_tokenizer_reloads_and_round_trips(trimmed, tmp_path, kind):
    from transformers import AutoTokenizer, RobertaTokenizer

    old_tok = AutoTokenizer.from_pretrained(trimmed[kind]["before"])
    new_tok = AutoTokenizer.from_pretrained(trimmed[kind]["after"])
    assert type(new_tok) is type(old_tok)
    new_tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    texts = clinc_test_texts(50) + ODD_TEXTS
    assert again(texts)["input_ids"] == new_tok(texts)["input_ids"]
    assert (
        again.convert_tokens_to_ids(new_tok.tokenize(texts[0]))
        == new_tok(texts[0], add_special_tokens=False)["input_ids"]
    )
    if kind == BYTE_LEVEL_BPE:  # the slow tokenizer's vocab.json and merges.txt are the trimmed ones
        slow = RobertaTokenizer.from_pretrained(trimmed[kind]["after"])
        assert all(slow(t)["input_ids"] == new_tok(t)["input_ids"] for t in texts)


def test_bpe_keeps_the_merge_chain_of_every_kept_token(trimmed):
    from transformers import AutoTokenizer

    old_tok = AutoTokenizer.from_pretrained(trimmed[BYTE_LEVEL_BPE]["before"])
    state = json.loads((trimmed[BYTE_LEVEL_BPE]["after"] / "tokenizer.json").read_text())
    vocab, merges = state["model"]["vocab"], [tuple(m) for m in state["model"]["merges"]]
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in merges)
    made = {a + b for a, b in merges}
    from tokenizers.pre_tokenizers import ByteLevel

    base = set(ByteLevel.alphabet()) | {t["content"] for t in state["added_tokens"]}
    assert set(vocab) - base <= made  # every kept token is made by a kept merge of kept parts
    assert trimmed[BYTE_LEVEL_BPE]["choice"].added_by["merges"] > 0

    # one long word: its single token is kept by the train rule, its intermediate tokens by the chain rule
    word = max(old_tok.get_vocab(), key=lambda t: (len(old_tok.tokenize(t.replace("Ġ", " "))) == 1, len(t)))
    text = word.replace("Ġ", " ")
    choice = choose_vocabulary(old_tok, [text], characters="none")
    assert old_tok.tokenize(text) == [word] and choice.added_by["merges"] > 0
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as folder:
        new_tok = save_trimmed_tokenizer(old_tok, choice.keep, Path(folder))
        assert new_tok.tokenize(text) == [word]


def test_unigram_keeps_scores_and_a_valid_unknown(trimmed):
    before = json.loads((trimmed[UNIGRAM]["before"] / "tokenizer.json").read_text())["model"]
    after = json.loads((trimmed[UNIGRAM]["after"] / "tokenizer.json").read_text())["model"]
    keep = trimmed[UNIGRAM]["choice"].keep
    assert after["vocab"] == [before["vocab"][i] for i in keep]  # pieces in the new order, scores as they were
    assert after["vocab"][after["unk_id"]][0] == before["vocab"][before["unk_id"]][0] == "[UNK]"
    lowest = min(score for _, score in before["vocab"])
    assert min(score for _, score in after["vocab"]) == lowest  # the unknown penalty is derived from it


def test_unigram_keeps_its_lowest_score_so_kept_texts_split_as_before(tmp_path):
    """The tokenizers library scores an unknown character from the vocabulary's lowest score: had
    ``z`` (never used) been dropped, the unknown penalty would rise from -50 to -20 and ``xbcd``,
    all of whose pieces are kept, would split as ``[UNK] bcd`` (-21) instead of ``xb c d`` (-25)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = [("[UNK]", 0.0), ("xb", -5.0), ("c", -10.0), ("d", -10.0), ("bcd", -1.0), ("z", -40.0)]
    unigram = Tokenizer(models.Unigram(vocab, unk_id=0))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=unigram, unk_token="[UNK]")
    choice = choose_vocabulary(tokenizer, ["xbcd", "bcd"], characters="none")
    assert choice.added_by == {"special": 1, "train": 4} and choice.keep == [0, 1, 2, 3, 4, 5]
    assert save_trimmed_tokenizer(tokenizer, choice.keep, tmp_path).tokenize("xbcd") == ["xb", "c", "d"]


def test_unigram_seen_characters_are_those_the_model_sees(tokenizer_dirs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dirs[UNIGRAM])
    seen = choose_vocabulary(tokenizer, ["Hello"], characters="seen")  # lower-cased, "▁" before each word
    every = choose_vocabulary(tokenizer, ["Hello"], characters="all")
    kept = {tokenizer.convert_ids_to_tokens(i) for i in seen.keep}
    assert {"▁", "h", "e", "l", "o"} <= kept and not {"H", "z"} & kept
    assert seen.added_by["characters"] < every.added_by["characters"]


def test_a_sentencepiece_model_file_of_the_old_vocabulary_is_not_carried(tmp_path, tokenizer_dirs, monkeypatch):
    from transformers import AlbertTokenizerFast, AutoTokenizer

    monkeypatch.setattr(AlbertTokenizerFast, "slow_tokenizer_class", object)  # as with sentencepiece installed
    folder = tmp_path / "albert"
    AutoTokenizer.from_pretrained(tokenizer_dirs[UNIGRAM]).save_pretrained(folder)
    (folder / "spiece.model").write_bytes(b"the untrimmed SentencePiece model")  # copied as is, never parsed
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.can_save_slow_tokenizer  # so a plain save_pretrained would copy it
    choice = choose_vocabulary(tokenizer, ["hello"])
    save_trimmed_tokenizer(tokenizer, choice.keep, tmp_path / "out")
    assert not (tmp_path / "out" / "spiece.model").exists()
    assert len(AutoTokenizer.from_pretrained(tmp_path / "out")) == len(choice.keep)


def test_the_stage_trims_a_roberta_and_records_what_changed(tmp_path, tokenizer_dirs):
    from transformers import AutoConfig

    from recipes.ml.data import RecipeData
    from recipes.plan.schema import DatasetSpec

    dataset = clinc_dataset(64, 8, 64)
    model_dir = tiny_classifier(BYTE_LEVEL_BPE, tokenizer_dirs[BYTE_LEVEL_BPE], tmp_path / "roberta", num_labels=151)
    config = AutoConfig.from_pretrained(model_dir)
    config.id2label = RecipeData(DatasetSpec(**dataset), seed=42).id2label
    config.label2id = {name: i for i, name in config.id2label.items()}
    config.save_pretrained(model_dir)
    trim = {"name": "trim", "type": "prune-vocab", "input": "base", "top_words": 100}
    run = run_one_stage(tmp_path, "trim-bpe", dataset, {"base": str(model_dir)}, trim)
    metrics = json.loads((run.out_dir / "trim" / ".stage.json").read_text())["metrics"]
    assert metrics["tokenizer_kind"] == BYTE_LEVEL_BPE and metrics["vocab_kept"] < metrics["vocab_total"] == 2000
    assert set(metrics["kept_by_rule"]) == {"special", "train", "bytes", "words", "merges"}
    assert metrics["embedding_mb_saved"] == pytest.approx((2000 - metrics["vocab_kept"]) * 32 * 4 / 2**20)
    test = metrics["test"]
    assert 0 < test["texts_changed"] < 1 and test["decoded_changed"] == 0 and test["unk_after"] == 0
    assert test["pieces_per_text_after"] >= test["pieces_per_text_before"]


# --- output embeddings and positions ------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_an_output_embedding_is_sliced_with_the_input(tmp_path, tied):
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=4)
    config.tie_word_embeddings = tied
    torch.manual_seed(0)
    model = BertForMaskedLM(config).eval()
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
    keep, ids = [0, 3, 7, 11], torch.tensor([[0, 3, 7, 11, 3]])
    with torch.no_grad():
        before = model(input_ids=ids).logits[..., keep]
    trim_embeddings(model, keep)
    model.save_pretrained(tmp_path)
    reloaded = BertForMaskedLM.from_pretrained(tmp_path).eval()
    new_ids = torch.tensor([[0, 1, 2, 3, 1]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=new_ids).logits, before, atol=1e-6)
        assert torch.allclose(reloaded(input_ids=new_ids).logits, before, atol=1e-6)
    output = reloaded.get_output_embeddings()
    assert output.weight.shape[0] == output.bias.shape[0] == 4
    assert (output.weight is reloaded.get_input_embeddings().weight) == tied


def test_a_roberta_pad_id_that_would_move_is_refused():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=4
    )
    config.bos_token_id = config.eos_token_id = None
    model = RobertaForSequenceClassification(config)  # pad id 1: position ids start at 2
    with pytest.raises(ValueError, match="numbers its positions from its pad token's id 1"):
        trim_embeddings(model, [1, 2, 5])
    trim_embeddings(model, [0, 1, 5])
    assert model.config.pad_token_id == 1 and model.get_input_embeddings().padding_idx == 1


def test_a_bert_pad_id_follows_its_row():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=4, pad_token_id=3
    )
    model = BertForSequenceClassification(config)
    trim_embeddings(model, [1, 3, 5])
    assert model.config.pad_token_id == 1 and model.get_input_embeddings().padding_idx == 1


# --- other kinds --------------------------------------------------------------------------------------


def other_kinds(root: Path) -> dict[str, Path]:
    """A WordLevel tokenizer and a character BPE (no ByteLevel), each saved as a fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = {}
    for name, model, trainer in (
        ("WordLevel", models.WordLevel(unk_token="[UNK]"), trainers.WordLevelTrainer),
        ("BPE", models.BPE(unk_token="[UNK]"), trainers.BpeTrainer),
    ):
        tokenizer = Tokenizer(model)
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer.train_from_iterator(clinc_train_texts()[:200], trainer(vocab_size=300, special_tokens=["[UNK]"]))
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(root / name)
        out[name] = root / name
    return out


def test_other_kinds_are_refused_with_one_message(tmp_path, tokenizer_dirs):
    from transformers import AutoTokenizer, BertTokenizer

    for kind, folder in tokenizer_dirs.items():
        assert supported_tokenizer(folder) is None, kind
    BertTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path / "slow", legacy_format=True)
    (tmp_path / "slow" / "tokenizer.json").unlink(missing_ok=True)
    assert supported_tokenizer(tmp_path / "slow") is None  # vocab.txt only: converted, as the stage would
    for what, folder in other_kinds(tmp_path).items():
        reason = supported_tokenizer(folder)
        assert reason.startswith(f"prune-vocab trims {SUPPORTED} tokenizers; this one is a ") and what in reason
        with pytest.raises(ValueError) as refused:
            choose_vocabulary(AutoTokenizer.from_pretrained(folder), ["hello"])
        assert str(refused.value) == reason
    assert "characters, not bytes" in supported_tokenizer(tmp_path / "BPE")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{")
    assert supported_tokenizer(tmp_path / "broken").startswith("cannot read")


def test_the_stage_names_a_tokenizer_it_cannot_trim(tmp_path):
    spec = PruneVocabSpec(name="trim", type="prune-vocab", input="kd")
    reason = supported_tokenizer(other_kinds(tmp_path)["WordLevel"])
    assert spec.tokenizer_problems(lambda ref: reason if ref == "kd" else None) == [
        f"stage 'trim' cannot trim the tokenizer of its input 'kd': {reason}"
    ]
    assert spec.tokenizer_problems(lambda ref: None) == []
