"""Before the first stage: hold a plan against its data and its models, reading schemas and
configs only, so that a mistake that would stop a run midway is refused in seconds.

``recipes check``, :func:`recipes.load` and the runner call :func:`check_plan`, which refuses,
with one message naming the field and what is allowed:

* a dataset section that the data does not fit: a config it lacks, a split role, a text or
  label column, a label column that is no ClassLabel, an ``oos_label`` that is none of its
  labels (:meth:`recipes.ml.data.RecipeData.check`, from the data's description);
* a model that cannot be found, or that a stage takes as a classifier of the dataset's labels
  while it predicts others (:mod:`recipes.plan.labels`), from its ``config.json``;
* a layer index past the depth of the model it indexes (a distillation's ``keep_layers`` or
  ``layer_map``, a search's ``keep_layers`` choices);
* a stage that asks of a model what its family cannot do (cut layers, remove heads, ...: see
  :mod:`recipes.ml.families`).

A model's depth comes from its ``config.json`` and follows it through the plan: a stage whose
spec class sets ``keeps_layers = True`` makes a model with its ``input``'s layers, a stage
with an ``output_layers(layers_of)`` method says how deep its model is, and a model taken from
another recipe's stage is as deep as that stage's (``kd``'s teacher is the ``teacher`` recipe's
fine-tuned ``models.base``). A stage with a ``layer_problems(layers_of)`` method lists its
layer mistakes. ``layers_of(ref)`` is the depth of a model the stage references, by its key
of ``models`` or its stage name; None when unknown, and then nothing is refused.

A model's family (its ``config.json``'s ``model_type``, as a :class:`~recipes.ml.families.ModelFamily`)
follows it the same way: a stage's model has its ``input``'s family unless its spec has an
``output_family(family_of)`` method, and a stage with a ``family_problems(family_of)`` method lists
what it asks of a model's family that the family cannot do. This module names no stage type and no
family: each stage type says what it needs, :mod:`recipes.ml.families` what each family can.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import DatasetError, ModelSourceError, RecipeValidationError
from ..ml.data import RecipeData
from ..ml.families import FamilyOf, ModelFamily
from .labels import config_labels, refuse_other_labels
from .loader import LoadedRecipe
from .planning import Plan, make_plan
from .schema import RecipeOutput
from .sources import exists, hub_unreachable, is_repo_id, looks_local, model_file, read_config

#: Where a ``config.json`` keeps the number of hidden layers (BERT and most encoders, DistilBERT, GPT-2, T5).
LAYER_KEYS = ("num_hidden_layers", "n_layers", "n_layer", "num_layers")


def check_plan(plan: Plan) -> None:
    """Refuse what the plan's stages would only find out mid-run (see the module docstring):
    raises :class:`DatasetError`, :class:`ModelSourceError` or :class:`RecipeValidationError`."""
    _refuse_unreachable_hub(plan)
    data = _checked_data(plan)
    models = _Models(plan)
    for item in plan.order:
        for key, source in item.recipe.models.items():
            if isinstance(source, str):
                models.config(item, key)  # every starting model is there, as the run resolves them all
        spec = item.recipe.dataset
        labels = list(data[item.recipe.name].schema.features[spec.label_column].names)
        refuse_other_labels(item, models.labels_in(item), labels, spec)
        problems = [p for stage in item.recipe.stages for p in _layer_problems(stage, models.layers_in(item))]
        if problems:
            raise RecipeValidationError(
                f"{item.path}: " + "; ".join(problems) + f". Layer counts from config.json: {models.depths_read()}."
            )
        problems = [p for stage in item.recipe.stages for p in _family_problems(stage, models.families_in(item))]
        problems += [p for stage in item.recipe.stages for p in _tokenizer_problems(stage, models.tokenizers_in(item))]
        if problems:
            raise RecipeValidationError(f"{item.path}: " + "; ".join(problems) + ".")
    plan.checked = True


def _checked_data(plan: Plan) -> dict[str, RecipeData]:
    """Each recipe's data, by recipe name; each distinct dataset section checked once."""
    found: dict[tuple[str, str], RecipeData] = {}
    by_recipe = {}
    for item in plan.order:
        data = RecipeData(item.recipe.dataset, item.recipe.seed, item.base_dir)
        key = (data.source, item.recipe.dataset.model_dump_json())
        if key not in found:
            data.check()
            found[key] = data
        by_recipe[item.recipe.name] = found[key]
    return by_recipe


def config_layers(config: dict) -> int | None:
    """The hidden layers a model's ``config.json`` states, or None."""
    found = [config[k] for k in LAYER_KEYS if isinstance(config.get(k), int) and not isinstance(config[k], bool)]
    return found[0] if found else None


def stage_layers(spec, layers_of: Callable[[str], int | None]) -> int | None:
    """The hidden layers of the model that ``spec``'s stage makes; None if unknown."""
    if hasattr(spec, "output_layers"):
        return spec.output_layers(layers_of)
    if getattr(spec, "keeps_layers", False):
        return layers_of(spec.refs()["input"])
    return None


def _layer_problems(spec, layers_of: Callable[[str], int | None]) -> list[str]:
    return spec.layer_problems(layers_of) if hasattr(spec, "layer_problems") else []


def stage_family(spec, family_of: FamilyOf) -> ModelFamily | None:
    """The family of the model that ``spec``'s stage makes: its ``input``'s unless it says otherwise."""
    if hasattr(spec, "output_family"):
        return spec.output_family(family_of)
    ref = spec.refs().get("input")
    return family_of(ref) if ref is not None else None


def _family_problems(spec, family_of: FamilyOf) -> list[str]:
    return spec.family_problems(family_of) if hasattr(spec, "family_problems") else []


def stage_tokenizer(spec, problem_of: Callable[[str], str | None]) -> str | None:
    """Whose tokenizer the model of ``spec``'s stage carries: its ``student``'s when it has one (a
    distillation into another model), else its ``input``'s."""
    refs = spec.refs()
    ref = refs.get("student") or refs.get("input")
    return problem_of(ref) if ref is not None else None


def _tokenizer_problems(spec, problem_of: Callable[[str], str | None]) -> list[str]:
    return spec.tokenizer_problems(problem_of) if hasattr(spec, "tokenizer_problems") else []


class _Models:
    """The plan's models: each starting model's ``config.json``, read once, and each model's depth."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self._configs: dict[tuple[str, str], dict] = {}
        self._layers: dict[tuple[str, str], int | None] = {}
        self._families: dict[tuple[str, str], ModelFamily | None] = {}
        self._tokenizers: dict[tuple[str, str], str | None] = {}
        self._depths: dict[str, int] = {}  # "models -> key 'source' (recipe)" -> its layers, as read

    def config(self, item: LoadedRecipe, key: str) -> dict:
        """The ``config.json`` of ``models -> key`` of ``item`` (a Hub id or a folder)."""
        source = item.recipe.models[key]
        cached = (str(item.base_dir), source)
        if cached not in self._configs:
            self._configs[cached] = read_config(f"{item.path}: models -> {key}", source, item.base_dir)
        return self._configs[cached]

    def depths_read(self) -> str:
        """The starting models whose depth was read, for a message: ``models -> base '...' (teacher): 6``."""
        return ", ".join(f"{model}: {layers}" for model, layers in self._depths.items())

    def labels_in(self, item: LoadedRecipe) -> Callable[[str], list[str] | None]:
        return lambda key: config_labels(self.config(item, key))

    def layers_in(self, item: LoadedRecipe) -> Callable[[str], int | None]:
        return lambda ref: self.layers(item, ref)

    def layers(self, item: LoadedRecipe, ref: str) -> int | None:
        """The hidden layers of ``ref`` (a key of ``models`` or a stage of ``item``), or None."""
        return self._trace(item, ref, self._layers, self._config_layers, stage_layers)

    def _config_layers(self, item: LoadedRecipe, key: str) -> int | None:
        found = config_layers(self.config(item, key))
        if found is not None:
            self._depths[f"models -> {key} {item.recipe.models[key]!r} ({item.recipe.name})"] = found
        return found

    def families_in(self, item: LoadedRecipe) -> FamilyOf:
        return lambda ref: self._trace(item, ref, self._families, self._config_family, stage_family)

    def _config_family(self, item: LoadedRecipe, key: str) -> ModelFamily:
        return ModelFamily.of(self.config(item, key))

    def tokenizers_in(self, item: LoadedRecipe) -> Callable[[str], str | None]:
        """Why the tokenizer of ``ref``'s model (its starting model's, followed through the plan)
        cannot have its vocabulary trimmed; None when it can or is unknown. Asked lazily: only a
        stage that trims a vocabulary reads a ``tokenizer.json``."""
        return lambda ref: self._trace(item, ref, self._tokenizers, self._tokenizer_problem, stage_tokenizer)

    def _tokenizer_problem(self, item: LoadedRecipe, key: str) -> str | None:
        from ..ml.vocabulary import supported_tokenizer

        field = f"{item.path}: models -> {key}"
        path = model_file(field, item.recipe.models[key], item.base_dir, "tokenizer.json")
        return supported_tokenizer(path.parent) if path is not None else None

    def _trace(self, item: LoadedRecipe, ref: str, cache: dict, read: Callable, derive: Callable):
        """What ``read(item, key)`` says of a starting model, followed to ``ref`` (a key of ``models``
        or a stage of ``item``): through other recipes' stages, and through ``derive(stage spec,
        of)`` for a stage's model, ``of`` answering for the models it references."""
        cached = (item.recipe.name, ref)
        if cached not in cache:
            source = item.recipe.models.get(ref)
            if isinstance(source, RecipeOutput):
                upstream = next(o for o in self.plan.order if o.recipe.name == source.recipe)
                found = self._trace(upstream, source.stage, cache, read, derive)
            elif source is not None:
                found = read(item, ref)
            else:
                found = derive(item.recipe.stage(ref), lambda r: self._trace(item, r, cache, read, derive))
            cache[cached] = found
        return cache[cached]


def _hub_needs(plan: Plan) -> tuple[list[str], list[str]]:
    """What the plan reads from the Hub: dataset ids and model ids (those that are valid ids)."""
    datasets, models = [], []
    for item in plan.order:
        source = RecipeData(item.recipe.dataset, item.recipe.seed, item.base_dir).source
        if not exists(Path(source)) and is_repo_id(source):
            datasets.append(f"dataset.id {source!r}")
        for key, model in item.recipe.models.items():
            if isinstance(model, str) and not looks_local(model, item.base_dir) and is_repo_id(model):
                models.append(f"models -> {key} {model!r} ({item.recipe.name})")
    return list(dict.fromkeys(datasets)), list(dict.fromkeys(models))


def _refuse_unreachable_hub(plan: Plan) -> None:
    """One message at once when the plan needs a Hub that does not answer, instead of retries per file."""
    datasets, models = _hub_needs(plan)
    reason = hub_unreachable() if datasets or models else None
    if reason:
        error = DatasetError if datasets else ModelSourceError
        raise error(
            f"{reason}; the plan reads {', '.join(datasets + models)} from it. Start a Hub (`make hub` in another "
            "shell, then HF_ENDPOINT=http://127.0.0.1:8080) or point HF_ENDPOINT at one, or give local folders "
            "(--set dataset.id=./my-data, --set models.base=./my-model)."
        )


def load_plan(name_or_path: str, overrides: list[str] = ()) -> Plan:
    """The plan of a recipe (a catalog name or a ``.yaml`` path) with ``--set`` items, held against
    its data and models: what :func:`recipes.load` returns."""
    plan = make_plan(str(name_or_path), list(overrides))
    check_plan(plan)
    return plan
