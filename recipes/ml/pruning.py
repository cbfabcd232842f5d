"""Pruning pieces shared by the ``prune-structured`` and ``prune-magnitude`` stages (the vocabulary's:
:mod:`recipes.ml.vocabulary`), and the record every pruning stage leaves.

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

The families' layouts (where the heads, FFN and blocks of BERT, DistilBERT, RoBERTa, DeBERTa-v2,
ALBERT, ELECTRA and ModernBERT live) come from :mod:`recipes.ml.families`; a model of another
family is refused with a message. ALBERT's layers share their weights: its "layers" here are the
distinct ones (one, in released checkpoints), scored over every repetition.
"""

from __future__ import annotations

import numpy as np

from .families import ModelFamily, layout, model_inputs

#: What the messages of a family the project does not know say it was needed for.
NEEDS = "pruning"

# --- the encoder's parts ---------------------------------------------------------------------------


def encoder_layers(model) -> list:
    """The distinct encoder blocks of a model of a known family; refuses any other."""
    return layout(model, NEEDS).encoder_blocks(model)


def layer_shapes(model) -> list[dict]:
    """Heads and FFN width of each encoder layer, as the model is now."""
    family = layout(model, NEEDS)
    return [
        {"heads": family.head_count(block), "ffn": family.ffn_width(block)} for block in family.encoder_blocks(model)
    ]


def kept_record(vocabulary: tuple[int, int] | None = None, layers: list[dict] | None = None) -> dict:
    """``metrics["kept"]``: what a stage left of its input (see the module docstring)."""
    out: dict = {}
    if vocabulary is not None:
        out["vocabulary"] = {"kept": int(vocabulary[0]), "total": int(vocabulary[1])}
    if layers is not None:
        out["layers"] = [{"layer": i, **entry} for i, entry in enumerate(layers)]
    return out


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
    and output columns) or the neuron (its row(s) in, its column out).
    """
    import torch

    family = layout(model, NEEDS)
    blocks = family.encoder_blocks(model)
    if method == "magnitude":
        return _magnitude_importance(family, blocks)
    model.eval()
    head_masks = [torch.ones(family.head_count(block), requires_grad=True) for block in blocks]
    ffn_masks = [torch.ones(family.ffn_width(block), requires_grad=True) for block in blocks]
    head_scores = [torch.zeros_like(m) for m in head_masks]
    ffn_scores = [torch.zeros_like(m) for m in ffn_masks]
    hooks = []
    for block, hmask, fmask in zip(blocks, head_masks, ffn_masks):
        size = family.head_width(block)
        hooks.append(family.attention_output(block).register_forward_pre_hook(_head_hook(hmask, size)))
        hooks.append(family.ffn_output(block).register_forward_pre_hook(_ffn_hook(fmask)))
    requires = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for batch in batches:
            loss = model(**model_inputs(model, batch)).loss
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


def _magnitude_importance(family, blocks) -> tuple[list, list]:
    import torch

    heads, ffn = [], []
    with torch.no_grad():
        for block in blocks:
            n, size = family.head_count(block), family.head_width(block)
            rows = sum(w.view(n, size, -1).pow(2).sum((1, 2)) for w in family.qkv_weights(block))
            cols = family.attention_output(block).weight.view(-1, n, size).pow(2).sum((0, 2))
            heads.append((rows + cols).sqrt())
            width = family.ffn_width(block)
            serving = family.ffn_input_rows(torch.arange(width), width)  # a gated FFN: 2 rows per neuron
            neuron_in = family.ffn_input(block).weight.pow(2).sum(1)[serving].view(-1, width).sum(0)
            neuron_out = family.ffn_output(block).weight.pow(2).sum(0)
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
    the ONNX exporter replay), so an already pruned layer's indices are translated. A family
    with no ``prune_heads`` (DeBERTa-v2, ModernBERT) is refused."""
    if not any(current.values()):
        return
    problem = ModelFamily.of(model.config).head_pruning_problem()
    if problem:
        raise ValueError(problem)
    heads_total = model.config.num_attention_heads
    original = {}
    for i, heads in current.items():
        already = set(model.config.pruned_heads.get(i, ()))
        remaining = [h for h in range(heads_total) if h not in already]
        original[i] = [remaining[h] for h in heads]
    model.prune_heads(original)


def shrink_ffn(model, keep: list[list[int]]) -> None:
    """Keep only the FFN neurons ``keep[i]`` of each layer; the config's FFN width follows."""
    import torch

    family = layout(model, NEEDS)
    for block, idx in zip(family.encoder_blocks(model), keep):
        family.shrink_ffn(block, torch.tensor(idx, dtype=torch.long))
    setattr(model.config, family.ffn_key, len(keep[0]))


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
