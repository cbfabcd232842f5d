"""The one place that knows each encoder family's layout; every other module asks here.

A family is what a model's ``config.json`` calls its ``model_type``. For each family the
project works on, :data:`FAMILIES` holds where its encoder blocks live, which module of a block
holds the attention heads (and their query, key and value projections), the attention's output
projection, the two Linear layers of the feed-forward network (FFN), the classifier's output
Linear, the config keys of its depth and FFN width, the tokenizer outputs its ``forward`` takes,
the kind of vocabulary its checkpoints ship, and what transformers cannot do with it (remove
heads). Stages that reach into a model (cutting layers, pruning) go through a
:class:`Family`; stages that only call a model (fine-tuning, export, quantization) need none of
this but :func:`model_inputs`.

The same questions are asked twice: by ``recipes check`` before any stage runs, from the
``config.json`` alone (:class:`ModelFamily`, which stage specs receive through their
``family_problems(family_of)`` method, see :mod:`recipes.plan.preflight`), and by the stage itself
when it loads the model, with the same message.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: The kinds of vocabulary (:attr:`Family.tokenizer`).
WORDPIECE, BYTE_LEVEL_BPE, UNIGRAM = "wordpiece", "byte-level-bpe", "unigram"
#: What a tokenizer may return that a model's ``forward`` may or may not take.
TOKENIZER_OUTPUTS = ("input_ids", "token_type_ids", "attention_mask")
_BERT_INPUTS = TOKENIZER_OUTPUTS
_NO_TOKEN_TYPES = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Family:
    """Where the parts of one family's sequence classifier live.

    Paths are dotted attribute paths. ``blocks`` starts at the base model (``model.base_model``)
    and may hold ``*`` (every item of a list: ALBERT's layer groups); ``attention``,
    ``attention_out``, ``ffn_in`` and ``ffn_out`` start at a block; ``qkv`` at the attention
    module (one path: a fused projection whose rows are all queries, then keys, then values);
    ``classifier`` at the classification model.
    """

    model_type: str
    name: str
    #: The vocabulary kind the family's checkpoints ship: WORDPIECE, BYTE_LEVEL_BPE or UNIGRAM.
    tokenizer: str
    #: The tokenizer outputs its ``forward`` takes.
    inputs: tuple[str, ...]
    blocks: str
    attention: str
    heads: str  # attribute of the attention module: its current number of heads
    head_size: str  # attribute of the attention module: the width of one head
    qkv: tuple[str, ...]
    attention_out: str
    ffn_in: str
    ffn_out: str
    classifier: str = "classifier"
    #: ``ffn_in`` holds an input and a gate row per neuron (GLU): neuron j is rows j and width + j.
    gated_ffn: bool = False
    layers_key: str = "num_hidden_layers"
    ffn_key: str = "intermediate_size"
    #: transformers implements ``prune_heads`` for it, and replays ``config.pruned_heads`` on load.
    prunes_heads: bool = True
    #: Every encoder layer runs the same weights (ALBERT): ``blocks`` are the distinct ones.
    shared_layers: bool = False
    #: Config key of "every n-th layer attends globally, the others locally" (ModernBERT), whose
    #: first layer also has no attention norm; None: every layer alike.
    global_every_key: str | None = None
    global_every_default: int = 3  # its value when a config.json leaves it out (transformers' default)

    # --- the parts of a model -------------------------------------------------------------------

    def encoder_blocks(self, model) -> list:
        """The distinct encoder blocks, in order (ALBERT: its shared layers, not their repetitions)."""
        found = [model.base_model]
        for name in self.blocks.split("."):
            found = [item for obj in found for item in obj] if name == "*" else [getattr(obj, name) for obj in found]
        return [block for blocks in found for block in blocks]

    def attention_module(self, block):
        return _get(block, self.attention)

    def head_count(self, block) -> int:
        return int(getattr(self.attention_module(block), self.heads))

    def head_width(self, block) -> int:
        return int(getattr(self.attention_module(block), self.head_size))

    def qkv_weights(self, block) -> list:
        """The query, key and value weights of a block, each ``(heads * head_width, hidden)``."""
        attention = self.attention_module(block)
        weights = [_get(attention, path).weight for path in self.qkv]
        return list(weights[0].chunk(3, dim=0)) if len(weights) == 1 else weights

    def attention_output(self, block):
        """The Linear that mixes the heads back: its input is the heads' outputs side by side."""
        return _get(block, self.attention_out)

    def ffn_input(self, block):
        return _get(block, self.ffn_in)

    def ffn_output(self, block):
        """The FFN's second Linear: its input is the neurons' activations."""
        return _get(block, self.ffn_out)

    def ffn_width(self, block) -> int:
        return int(self.ffn_output(block).in_features)

    def ffn_input_rows(self, neurons, width: int):
        """The rows of the FFN's first Linear that serve ``neurons`` (a LongTensor)."""
        import torch

        return torch.cat([neurons, neurons + width]) if self.gated_ffn else neurons

    def shrink_ffn(self, block, neurons) -> None:
        """Keep only ``neurons`` (a LongTensor of indices) of the block's FFN."""
        from transformers.pytorch_utils import prune_linear_layer

        rows = self.ffn_input_rows(neurons, self.ffn_width(block))
        _set(block, self.ffn_in, prune_linear_layer(self.ffn_input(block), rows, dim=0))
        _set(block, self.ffn_out, prune_linear_layer(self.ffn_output(block), neurons, dim=1))

    def classifier_head(self, model):
        """The Linear whose outputs are the logits, one per label."""
        return _get(model, self.classifier)

    # --- cutting layers -----------------------------------------------------------------------------

    def global_every(self, config) -> int:
        """Every how many layers one attends globally (:attr:`global_every_key`)."""
        return int(_setting(config, self.global_every_key) or self.global_every_default)

    def student_global_every(self, config, keep_layers: list[int]) -> int | None:
        """For a family whose every n-th layer attends globally: the n of a student cut to
        ``keep_layers`` under which each kept layer keeps its kind (the teacher's n when it fits,
        else the smallest), or None when none does or the first kept layer is not layer 0 (which
        alone has no attention norm)."""
        every = self.global_every(config)
        kinds = [old % every == 0 for old in keep_layers]

        def fits(n: int) -> bool:
            return [j % n == 0 for j in range(len(keep_layers))] == kinds

        if not keep_layers or keep_layers[0] != 0:
            return None
        return every if fits(every) else next((n for n in range(1, len(keep_layers) + 1) if fits(n)), None)

    def cut(self, teacher, keep_layers: list[int]):
        """A shallower copy of ``teacher`` keeping the encoder layers ``keep_layers``
        (DistilBERT-style): embeddings and classifier copied, kept layer ``keep_layers[j]``
        becoming layer ``j``. ALBERT (one shared layer) keeps its weights and repeats it
        ``len(keep_layers)`` times."""
        problem = ModelFamily.of(teacher.config).cut_problem(keep_layers)
        if problem:
            raise ValueError(problem)
        config = teacher.config.__class__.from_dict(teacher.config.to_dict())
        setattr(config, self.layers_key, len(keep_layers))
        if self.global_every_key:
            setattr(config, self.global_every_key, self.student_global_every(teacher.config, keep_layers))
        student = type(teacher)(config)
        new_index = {old: new for new, old in enumerate(keep_layers)}
        block_key = re.compile(rf"^({re.escape(teacher.base_model_prefix)}\.{re.escape(self.blocks)}\.)(\d+)(\..*)$")
        state = {}
        for key, value in teacher.state_dict().items():
            match = None if self.shared_layers else block_key.match(key)
            if match:
                old = int(match.group(2))
                if old not in new_index:
                    continue
                key = f"{match.group(1)}{new_index[old]}{match.group(3)}"
            state[key] = value.clone()
        student.load_state_dict(state, strict=True)
        return student


def _get(obj, path: str):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def _set(obj, path: str, value) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_get(obj, parent) if parent else obj, name, value)


def _bert_like(model_type: str, name: str, tokenizer: str, inputs: tuple[str, ...], **kw) -> Family:
    """BERT's block layout (``encoder.layer[i]`` with ``attention.self``, ``attention.output.dense``,
    ``intermediate.dense``, ``output.dense``), which RoBERTa and ELECTRA share."""
    return Family(
        model_type=model_type,
        name=name,
        tokenizer=tokenizer,
        inputs=inputs,
        blocks="encoder.layer",
        attention="attention.self",
        heads="num_attention_heads",
        head_size="attention_head_size",
        qkv=("query", "key", "value"),
        attention_out="attention.output.dense",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        **kw,
    )


#: The families the project works on, by ``model_type`` (transformers 4.57).
FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        _bert_like("bert", "BERT", WORDPIECE, _BERT_INPUTS),
        _bert_like("roberta", "RoBERTa", BYTE_LEVEL_BPE, _NO_TOKEN_TYPES, classifier="classifier.out_proj"),
        _bert_like("electra", "ELECTRA", WORDPIECE, _BERT_INPUTS, classifier="classifier.out_proj"),
        Family(
            model_type="distilbert",
            name="DistilBERT",
            tokenizer=WORDPIECE,
            inputs=_NO_TOKEN_TYPES,
            blocks="transformer.layer",
            attention="attention",
            heads="n_heads",
            head_size="attention_head_size",
            qkv=("q_lin", "k_lin", "v_lin"),
            attention_out="attention.out_lin",
            ffn_in="ffn.lin1",
            ffn_out="ffn.lin2",
            layers_key="n_layers",
            ffn_key="hidden_dim",
        ),
        Family(
            model_type="deberta-v2",
            name="DeBERTa-v2",
            tokenizer=UNIGRAM,
            inputs=_BERT_INPUTS,
            blocks="encoder.layer",
            attention="attention.self",
            heads="num_attention_heads",
            head_size="attention_head_size",
            qkv=("query_proj", "key_proj", "value_proj"),
            attention_out="attention.output.dense",
            ffn_in="intermediate.dense",
            ffn_out="output.dense",
            prunes_heads=False,
        ),
        Family(
            model_type="albert",
            name="ALBERT",
            tokenizer=UNIGRAM,
            inputs=_BERT_INPUTS,
            blocks="encoder.albert_layer_groups.*.albert_layers",
            attention="attention",
            heads="num_attention_heads",
            head_size="attention_head_size",
            qkv=("query", "key", "value"),
            attention_out="attention.dense",
            ffn_in="ffn",
            ffn_out="ffn_output",
            shared_layers=True,
        ),
        Family(
            model_type="modernbert",
            name="ModernBERT",
            tokenizer=BYTE_LEVEL_BPE,
            inputs=_NO_TOKEN_TYPES,
            blocks="layers",
            attention="attn",
            heads="num_heads",
            head_size="head_dim",
            qkv=("Wqkv",),
            attention_out="attn.Wo",
            ffn_in="mlp.Wi",
            ffn_out="mlp.Wo",
            gated_ffn=True,
            prunes_heads=False,
            global_every_key="global_attn_every_n_layers",
        ),
    )
}


def known_families() -> str:
    """The families, for messages: ``BERT (bert), DistilBERT (distilbert), ...``."""
    return ", ".join(f"{f.name} ({f.model_type})" for f in FAMILIES.values())


def _setting(config, key: str, default: Any = None) -> Any:
    """``key`` of a config, whether a ``config.json`` dict or a transformers config object."""
    return config.get(key, default) if isinstance(config, Mapping) else getattr(config, key, default)


@dataclass(frozen=True)
class ModelFamily:
    """A model's family as its config states it, and what the family can and cannot do with it.

    Built from a ``config.json`` dict (``recipes check`` reads no weights) or from a loaded
    model's config. Each ``*_problem`` method returns None when the model can, else one sentence
    naming the family, why not and what would work; stage specs put the stage's name before it.
    """

    model_type: str | None
    config: Any  # a config.json dict or a transformers PretrainedConfig

    @classmethod
    def of(cls, config) -> ModelFamily:
        return cls(_setting(config, "model_type"), config)

    @property
    def family(self) -> Family | None:
        return FAMILIES.get(self.model_type or "")

    def describe(self) -> str:
        """``a DistilBERT model`` or, for a family the project does not know, its model_type."""
        if self.family is not None:
            return f"{'an' if self.family.name[0] in 'AEIOU' else 'a'} {self.family.name} model"
        return f"a model of model_type {self.model_type!r}" if self.model_type else "a model with no model_type"

    def setting(self, key: str, default: Any = None) -> Any:
        return _setting(self.config, key, default)

    def layout_problem(self, needs: str) -> str | None:
        """Why the project cannot reach into this model's layers for ``needs`` (a family it does not know)."""
        if self.family is not None:
            return None
        return (
            f"{needs} needs to know where the model's layers are, and it is {self.describe()}; the project knows "
            f"{known_families()}: start from one of those"
        )

    def cut_problem(self, keep_layers: list[int]) -> str | None:
        """Why a student cannot be cut from this model keeping ``keep_layers``."""
        problem = self.layout_problem("cutting layers (keep_layers)")
        family = self.family
        if problem or family is None:
            return problem
        if family.shared_layers and self.setting("num_hidden_groups", 1) != 1:
            return (
                f"cutting layers from {self.describe()} needs one shared layer (num_hidden_groups 1, as every "
                f"released ALBERT has), and this one has num_hidden_groups {self.setting('num_hidden_groups')}: "
                "give the student as a model (student:) instead of keep_layers"
            )
        if family.global_every_key and family.student_global_every(self.config, keep_layers) is None:
            every = family.global_every(self.config)
            return (
                f"keep_layers {keep_layers} cannot make {self.describe()}: its layer 0 has no attention norm, and "
                f"every n-th layer attends globally (n = global_attn_every_n_layers = {every}: layers 0, {every}, "
                f"{2 * every}, ...), the others within a window; keep layer 0 first and the global layers at every "
                f"m-th place of the student for one m (the first layers always do: "
                f"keep_layers: {list(range(len(keep_layers)))})"
            )
        return None

    def head_pruning_problem(self) -> str | None:
        """Why attention heads of this model cannot be removed (the stage says what to set instead)."""
        problem = self.layout_problem("removing attention heads")
        if problem or self.family is None or self.family.prunes_heads:
            return problem
        return (
            f"{self.describe()} cannot lose attention heads: transformers has no prune_heads for "
            f"{self.family.name}, so a model with heads removed would not load again (families that can: "
            f"{', '.join(f.name for f in FAMILIES.values() if f.prunes_heads)})"
        )

    def attention_maps_problem(self) -> str | None:
        """Why this model's attention maps do not pair one per layer (ALBERT with inner groups)."""
        inner = self.setting("inner_group_num", 1)
        if self.family is not None and self.family.shared_layers and inner != 1:
            return (
                f"{self.describe()} with inner_group_num {inner} returns {inner} attention maps per layer, which "
                "the attention loss cannot pair with layers; set attention_weight: 0 (hidden_weight works)"
            )
        return None


#: A model's family by its reference in a plan (a key of ``models`` or a stage); None if unknown.
FamilyOf = Callable[[str], ModelFamily | None]


def family_of(config) -> Family | None:
    """The :class:`Family` of a config (dict or object); None for a family the project does not know."""
    return ModelFamily.of(config).family


def layout(model, needs: str) -> Family:
    """The :class:`Family` of a loaded model; refuses one whose layout the project does not know."""
    found = ModelFamily.of(model.config)
    problem = found.layout_problem(needs)
    if problem:
        raise ValueError(problem)
    return found.family


def ffn_width(config) -> int | None:
    """The FFN width a config states (``intermediate_size``; DistilBERT: ``hidden_dim``), or None."""
    family = family_of(config)
    return _setting(config, family.ffn_key) if family else None


def tokenizer_kind(config) -> str | None:
    """The vocabulary kind a family's checkpoints ship (WORDPIECE, BYTE_LEVEL_BPE, UNIGRAM), or None."""
    family = family_of(config)
    return family.tokenizer if family else None


def forward_inputs(model) -> tuple[str, ...]:
    """The tokenizer outputs ``model`` takes: its family's, or for another family those its
    ``forward`` names (PyTorch or ONNX Runtime model alike)."""
    family = family_of(model.config)
    if family is not None:
        return family.inputs
    parameters = inspect.signature(model.forward).parameters
    return tuple(name for name in TOKENIZER_OUTPUTS if name in parameters)


def model_inputs(model, batch: Mapping) -> dict:
    """``batch`` without the tokenizer outputs ``model``'s forward does not take (a WordPiece
    tokenizer's ``token_type_ids`` before a DistilBERT); other keys (labels, ...) stay."""
    taken = forward_inputs(model)
    return {k: v for k, v in batch.items() if k not in TOKENIZER_OUTPUTS or k in taken}


def align_tokenizer(model, tokenizer):
    """``tokenizer`` returning only the inputs ``model`` takes, so that ``pipeline()`` and any
    caller that passes its outputs straight to the model work; saved with it, the setting travels
    (``tokenizer_config.json``). A tokenizer that already fits is left as it is."""
    taken = forward_inputs(model)
    names = list(tokenizer.model_input_names)
    kept = [name for name in names if name not in TOKENIZER_OUTPUTS or name in taken]
    if kept != names:
        tokenizer.model_input_names = kept
        tokenizer.init_kwargs["model_input_names"] = kept
    return tokenizer
