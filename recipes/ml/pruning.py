"""Pruning pieces shared by the ``prune-vocab``, ``prune-structured`` and ``prune-magnitude`` stages.

- Vocabulary: which WordPiece rows to keep (:func:`choose_vocabulary`), the tokenizer rebuilt
  with only those (:func:`save_trimmed_tokenizer`: its ``tokenizer.json`` and ``vocab.txt``
  rewritten, every other setting as it was) and the embedding sliced to match
  (:func:`trim_embeddings`).
- Structure: the importance of each attention head and FFN neuron (:func:`importance`: the
  gradient of the loss with respect to a mask on each, Michel et al. 2019, or the weights'
  norms), which to remove (:func:`heads_to_remove`, :func:`ffn_to_keep`), and their removal
  (:func:`remove_heads`, :func:`shrink_ffn`): smaller matrices, described by the config.
- Weights: gradual magnitude pruning on the cubic schedule of Zhu & Gupta (2017)
  (:func:`cubic_sparsity`, :class:`MagnitudePruner`, :class:`MagnitudePruningCallback`).

Every stage records what it kept as ``metrics["kept"]`` (:func:`kept_record`): ``vocabulary``
(``kept``, ``total``) and ``layers`` (per encoder layer: ``heads``/``heads_total``,
``ffn``/``ffn_total``, ``sparsity``). The model card merges the records along the published
model's line, knowing no stage type by name.

BERT-like encoders only (``base_model.encoder.layer[i]`` with ``attention.self``,
``attention.output.dense``, ``intermediate.dense``, ``output.dense``: BERT, MiniLM, RoBERTa,
ELECTRA); anything else is refused with a message.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# --- sizes -----------------------------------------------------------------------------------------


def gzip_size_mb(path: Path, level: int = 6) -> float:
    """Bytes of ``path`` after gzip-style DEFLATE at ``level``, in MB (2**20): what zeros save on
    disk or on the wire, while a dense runtime still loads and multiplies every one of them."""
    compressor, total = zlib.compressobj(level, zlib.DEFLATED, 31), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            total += len(compressor.compress(chunk))
    return (total + len(compressor.flush())) / 2**20


def weights_size_mb(model_dir: Path) -> dict[str, float]:
    """Raw and gzip size of a PyTorch folder's weight files."""
    from .modelio import read_format

    files = [Path(model_dir) / name for name in read_format(model_dir).weights]
    return {
        "size_mb": sum(f.stat().st_size for f in files) / 2**20,
        "size_gzip_mb": sum(gzip_size_mb(f) for f in files),
    }


# --- the encoder's parts ---------------------------------------------------------------------------


def encoder_layers(model) -> list:
    """The encoder blocks of a BERT-like model; refuses a model built otherwise."""
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if layers is None or not all(_is_bert_block(layer) for layer in layers):
        raise ValueError(
            f"{type(model).__name__} is not a BERT-like encoder (encoder.layer[i] with attention.self, "
            "attention.output.dense, intermediate.dense, output.dense): pruning needs that layout"
        )
    return list(layers)


def _is_bert_block(layer) -> bool:
    attention = getattr(layer, "attention", None)
    return all(
        hasattr(obj, name)
        for obj, name in (
            (attention, "self"),
            (getattr(attention, "output", None), "dense"),
            (getattr(layer, "intermediate", None), "dense"),
            (getattr(layer, "output", None), "dense"),
        )
    )


def layer_shapes(model) -> list[dict]:
    """Heads and FFN width of each encoder layer, as the model is now."""
    return [
        {"heads": layer.attention.self.num_attention_heads, "ffn": layer.intermediate.dense.out_features}
        for layer in encoder_layers(model)
    ]


def kept_record(vocabulary: tuple[int, int] | None = None, layers: list[dict] | None = None) -> dict:
    """``metrics["kept"]``: what a stage left of its input (see the module docstring)."""
    out: dict = {}
    if vocabulary is not None:
        out["vocabulary"] = {"kept": int(vocabulary[0]), "total": int(vocabulary[1])}
    if layers is not None:
        out["layers"] = [{"layer": i, **entry} for i, entry in enumerate(layers)]
    return out


# --- vocabulary --------------------------------------------------------------------------------------


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


def predictions(model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """Argmax predictions of a PyTorch classifier on ``texts``."""
    from .modelio import PYTORCH, Classifier

    model.eval()
    clf = Classifier(model=model, tokenizer=tokenizer, format=PYTORCH, make_pipeline=lambda: None)
    logits = clf.logits(texts, batch_size=batch_size, max_length=max_length)
    return logits.argmax(axis=-1) if len(logits) else np.zeros(0, dtype=int)


# --- structure: importance ----------------------------------------------------------------------------


def importance(model, batches, method: str) -> tuple[list, list]:
    """Per encoder layer: a score for each attention head and for each FFN neuron (higher:
    more important).

    ``gradient`` (Michel et al., 2019, "Are Sixteen Heads Really Better than One?"): a mask
    of ones multiplies each head's output (before the attention's output projection) and each
    FFN neuron's activation (before the FFN's output projection); the score is
    ``sum over batches |dL/d mask|``, L the cross-entropy on the true labels; head scores are
    then divided by their layer's L2 norm, as the paper does, so layers compare.
    ``magnitude``: the L2 norm of the weights that serve the head (its query, key, value rows
    and output columns) or the neuron (its row in, its column out).
    """
    import torch

    layers = encoder_layers(model)
    if method == "magnitude":
        return _magnitude_importance(layers)
    model.eval()
    head_masks = [torch.ones(layer.attention.self.num_attention_heads, requires_grad=True) for layer in layers]
    ffn_masks = [torch.ones(layer.intermediate.dense.out_features, requires_grad=True) for layer in layers]
    head_scores = [torch.zeros_like(m) for m in head_masks]
    ffn_scores = [torch.zeros_like(m) for m in ffn_masks]
    hooks = []
    for layer, hmask, fmask in zip(layers, head_masks, ffn_masks):
        size = layer.attention.self.attention_head_size
        hooks.append(layer.attention.output.dense.register_forward_pre_hook(_head_hook(hmask, size)))
        hooks.append(layer.output.dense.register_forward_pre_hook(_ffn_hook(fmask)))
    requires = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for batch in batches:
            loss = model(**batch).loss
            grads = torch.autograd.grad(loss, head_masks + ffn_masks)
            for score, grad in zip(head_scores + ffn_scores, grads):
                score += grad.abs()
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in zip(model.parameters(), requires):
            p.requires_grad_(flag)
    head_scores = [s / (s.norm() + 1e-20) for s in head_scores]
    return [s.detach() for s in head_scores], [s.detach() for s in ffn_scores]


def _head_hook(mask, head_size: int):
    def hook(module, args):
        x = args[0]
        shape = x.shape
        x = (x.view(*shape[:-1], -1, head_size) * mask.view(-1, 1)).view(shape)
        return (x, *args[1:])

    return hook


def _ffn_hook(mask):
    def hook(module, args):
        return (args[0] * mask, *args[1:])

    return hook


def _magnitude_importance(layers) -> tuple[list, list]:
    import torch

    heads, ffn = [], []
    with torch.no_grad():
        for layer in layers:
            att = layer.attention
            n, size = att.self.num_attention_heads, att.self.attention_head_size
            rows = sum(
                getattr(att.self, m).weight.view(n, size, -1).pow(2).sum((1, 2)) for m in ("query", "key", "value")
            )
            cols = att.output.dense.weight.view(-1, n, size).pow(2).sum((0, 2))
            heads.append((rows + cols).sqrt())
            neuron_in = layer.intermediate.dense.weight.pow(2).sum(1)
            neuron_out = layer.output.dense.weight.pow(2).sum(0)
            ffn.append((neuron_in + neuron_out).sqrt())
    return heads, ffn


# --- structure: what goes --------------------------------------------------------------------------


def heads_to_remove(scores: list, fraction: float, scope: str, min_heads: int) -> dict[int, list[int]]:
    """Current head indices to remove per layer: the lowest-scored ``fraction`` of each layer
    (``scope="layer"``) or of the whole model (``"model"``), never leaving a layer fewer than
    ``min_heads`` heads."""
    counts = [len(s) for s in scores]
    out: dict[int, list[int]] = {}
    if scope == "layer":
        for i, s in enumerate(scores):
            n = min(int(fraction * counts[i]), counts[i] - min_heads)
            if n > 0:
                out[i] = sorted(int(h) for h in np.argsort(s.numpy(), kind="stable")[:n])
        return out
    budget = int(fraction * sum(counts))
    ranked = sorted((float(v), i, h) for i, s in enumerate(scores) for h, v in enumerate(s.tolist()))
    removed = [0] * len(scores)
    for _, i, h in ranked:
        if budget == 0:
            break
        if counts[i] - removed[i] > min_heads:
            out.setdefault(i, []).append(h)
            removed[i] += 1
            budget -= 1
    return {i: sorted(hs) for i, hs in out.items()}


def ffn_to_keep(scores: list, fraction: float) -> list[list[int]]:
    """Per layer, the indices of the FFN neurons kept: the same number in every layer (the
    config has one ``intermediate_size``), the highest-scored of each layer, in their order."""
    widths = {len(s) for s in scores}
    if len(widths) != 1:
        raise ValueError(f"the FFN widths differ between layers ({sorted(widths)}); the config holds one")
    width = widths.pop()
    keep = width - int(fraction * width)
    return [sorted(int(j) for j in np.argsort(-s.numpy(), kind="stable")[:keep]) for s in scores]


def remove_heads(model, current: dict[int, list[int]]) -> None:
    """Remove heads given by their current index in each layer; ``model.prune_heads`` takes the
    original indices (it records them in ``config.pruned_heads``, which ``from_pretrained`` and
    the ONNX exporter replay), so an already pruned layer's indices are translated."""
    heads_total = model.config.num_attention_heads
    original = {}
    for i, heads in current.items():
        already = set(encoder_layers(model)[i].attention.pruned_heads)
        remaining = [h for h in range(heads_total) if h not in already]
        original[i] = [remaining[h] for h in heads]
    if original:
        model.prune_heads(original)


def shrink_ffn(model, keep: list[list[int]]) -> None:
    """Keep only the FFN neurons ``keep[i]`` of each layer; ``config.intermediate_size`` follows."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    for layer, idx in zip(encoder_layers(model), keep):
        index = torch.tensor(idx, dtype=torch.long)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)
    model.config.intermediate_size = len(keep[0])


# --- weights: gradual magnitude pruning -----------------------------------------------------------------


def cubic_sparsity(step: int, total: int, final: float, initial: float = 0.0, start: float = 0.0, end: float = 1.0):
    """Zhu & Gupta (2017): ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3`` between
    ``t0 = start * total`` and ``t1 = end * total`` steps; ``s_i`` before, ``s_f`` after."""
    t0, t1 = start * total, end * total
    if step < t0 or (step == t0 and t1 > t0):
        return initial
    if step >= t1:
        return final
    return final + (initial - final) * (1.0 - (step - t0) / (t1 - t0)) ** 3


def prunable_linears(model) -> list[tuple[str, object]]:
    """The encoder's Linear layers (attention and FFN), by name: what magnitude pruning zeroes.
    Embeddings, pooler and classifier stay dense."""
    import torch

    out = []
    for i, layer in enumerate(encoder_layers(model)):
        for name, module in layer.named_modules():
            if isinstance(module, torch.nn.Linear):
                out.append((f"layer.{i}.{name}", module))
    return out


class MagnitudePruner:
    """Masks on the encoder's Linear weights: :meth:`update` sets them to zero the smallest
    ``sparsity`` share of weights (each matrix alone, ``scope="layer"``, or all together,
    ``"model"``); :meth:`apply` multiplies the weights by them (after every optimizer step, so a
    zeroed weight stays zero); :meth:`make_permanent` applies them a last time and drops them."""

    def __init__(self, model, scope: str = "layer"):
        import torch

        self.modules = prunable_linears(model)
        self.scope = scope
        self.masks = {name: torch.ones_like(m.weight, dtype=torch.bool) for name, m in self.modules}
        self.sparsity = 0.0

    def update(self, sparsity: float) -> None:
        import torch

        self.sparsity = sparsity
        with torch.no_grad():
            if self.scope == "layer":
                for name, module in self.modules:
                    self.masks[name] = _keep_largest(module.weight.abs().flatten(), sparsity).view_as(module.weight)
                return
            flat = torch.cat([m.weight.abs().flatten() for _, m in self.modules])
            keep = _keep_largest(flat, sparsity)
            offset = 0
            for name, module in self.modules:
                n = module.weight.numel()
                self.masks[name] = keep[offset : offset + n].view_as(module.weight)
                offset += n

    def apply(self) -> None:
        import torch

        with torch.no_grad():
            for name, module in self.modules:
                module.weight.mul_(self.masks[name])

    def make_permanent(self, sparsity: float) -> None:
        self.update(sparsity)
        self.apply()


def _keep_largest(values, sparsity: float):
    """A boolean mask that is False on exactly ``round(sparsity * n)`` of the smallest ``values``."""
    import torch

    n_zero = int(round(sparsity * values.numel()))
    mask = torch.ones_like(values, dtype=torch.bool)
    if n_zero > 0:
        mask[torch.topk(values, n_zero, largest=False, sorted=False).indices] = False
    return mask


def sparsity_by_layer(model) -> list[float]:
    """Share of zero weights in each encoder layer's Linear weights."""
    per_layer: dict[int, list[int]] = {}
    for name, module in prunable_linears(model):
        i = int(name.split(".")[1])
        zeros, total = per_layer.setdefault(i, [0, 0]), module.weight.numel()
        zeros[0] += int((module.weight == 0).sum())
        zeros[1] += total
    return [z / t for z, t in (per_layer[i] for i in sorted(per_layer))]


def sparsity_by_matrix(model) -> dict[str, float]:
    return {name: float((m.weight == 0).float().mean()) for name, m in prunable_linears(model)}


def make_callback(pruner: MagnitudePruner, final: float, initial: float, start: float, end: float, every: int):
    """A Trainer callback that follows the cubic schedule: masks recomputed every ``every``
    steps (and at the schedule's end), applied after every step, permanent when training ends."""
    from transformers import TrainerCallback

    class MagnitudePruningCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if initial > 0 and start == 0:
                pruner.update(initial)
                pruner.apply()

        def on_step_end(self, args, state, control, **kwargs):
            step, total = state.global_step, max(1, state.max_steps)
            target = cubic_sparsity(step, total, final, initial, start, end)
            if step % every == 0 or (target == final and pruner.sparsity != final):
                pruner.update(target)
            pruner.apply()

        def on_train_end(self, args, state, control, **kwargs):
            pruner.make_permanent(final)

    return MagnitudePruningCallback()


# --- the card's plot -------------------------------------------------------------------------------------


def kept_figure(kept: dict):
    """Bars of the share of each part kept: the vocabulary, then per encoder layer its heads, FFN
    width and non-zero weights (``kept``: the card's merged record, ``hubtools.card.kept_on_line``).
    A matplotlib Figure on its own Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = kept.get("layers") or []
    series = [
        ("attention heads", [e["heads"] / e["heads_total"] if "heads" in e else None for e in layers]),
        ("FFN width", [e["ffn"] / e["ffn_total"] if "ffn" in e else None for e in layers]),
        ("non-zero weights", [1 - e["sparsity"] if "sparsity" in e else None for e in layers]),
    ]
    series = [(name, values) for name, values in series if any(v is not None for v in values)]
    fig = Figure(figsize=(7.5, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series):
        xs = [i + 1 + (k - (len(series) - 1) / 2) * width for i in range(len(layers))]
        ax.bar(xs, [v or 0 for v in values], width=width, label=name, color=f"C{k}")
    labels = [f"layer {e['layer']}" for e in layers]
    vocabulary = kept.get("vocabulary")
    if vocabulary:
        ax.bar([0], [vocabulary["kept"] / vocabulary["total"]], width=0.5, color="grey", label="vocabulary rows")
    ax.set_xticks(([0] if vocabulary else []) + list(range(1, len(layers) + 1)))
    ax.set_xticklabels((["vocabulary"] if vocabulary else []) + labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share kept")
    ax.set_title("What pruning kept")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False, fontsize="small")
    fig.tight_layout()
    return fig
