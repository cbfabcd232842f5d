"""Plan a run: the recipe, the recipes it depends on (first), one dataset and one scope for all.

A plan runs on ONE dataset and ONE set of starting models, given once:

* the target recipe's ``dataset`` section (after ``--set dataset.<field>=...``) replaces the
  dataset of every recipe it depends on, so ``python -m recipes run kd --set dataset.id=./mine``
  fine-tunes the teacher on ``./mine`` too;
* ``--set models.<key>=<Hub id or folder>`` applies to every recipe of the plan that declares
  ``<key>``: ``--set models.teacher=./my-classifier`` makes every recipe take that model as its
  teacher, so no teacher is fine-tuned; ``--set models.base=...`` changes the model the
  teacher is fine-tuned from;
* ``--set seed=N`` applies to every recipe; every other override applies to the named recipe.

The scope (``<dataset>-<config>_<model>_<hash>``) names the output folder shared by the plan's
recipes: runs on other data, other starting models or another seed never share a folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecipeValidationError
from .loader import LoadedRecipe, find_recipe, load_recipe
from .schema import RecipeOutput
from .sources import looks_local

log = logging.getLogger("recipes")


@dataclass
class Plan:
    """Recipes to run, dependencies first (the target last), and their shared scope."""

    order: list[LoadedRecipe]
    scope: str
    scope_info: dict  # what the scope stands for: dataset, starting models, seed
    #: Set by :func:`recipes.plan.preflight.check_plan` once the plan was held against its data and
    #: models, so a plan made by :func:`recipes.load` is not checked again when it runs.
    checked: bool = False

    @property
    def target(self) -> LoadedRecipe:
        return self.order[-1]


def _override_key(item: str) -> list[str]:
    return item.partition("=")[0].strip().split(".")


def _declared_models(path: Path) -> set[str]:
    return set(load_recipe(str(path)).recipe.models)


def _dataset_override(target: LoadedRecipe) -> str:
    """The target's dataset section as one ``--set dataset=...`` for its dependencies, with a
    local folder made absolute (a relative one is relative to the target's file)."""
    dataset = target.recipe.dataset.model_dump(mode="json")
    if looks_local(dataset["id"], target.base_dir):
        dataset["id"] = str((target.base_dir / dataset["id"]).resolve())
    return "dataset=" + json.dumps(dataset)


def _dependencies(item: LoadedRecipe) -> list[str]:
    deps = list(item.recipe.requires)
    deps += [s.recipe for s in item.recipe.models.values() if isinstance(s, RecipeOutput)]
    return list(dict.fromkeys(deps))


def make_plan(name_or_path: str, overrides: list[str] = (), search_dir: Path | None = None) -> Plan:
    """Load and validate the recipe and every recipe it depends on; nothing runs."""
    overrides = list(overrides)
    model_sets = {
        tuple(_override_key(o))[1]: o
        for o in overrides
        if _override_key(o)[0] == "models" and len(_override_key(o)) == 2
    }
    plan_wide = [o for o in overrides if _override_key(o) == ["seed"]]
    target_path = find_recipe(name_or_path, search_dir)
    declared_by: dict[str, list[str]] = {}

    def load(path: Path, own: list[str]) -> LoadedRecipe:
        declared = _declared_models(path) if model_sets else set()
        for key in declared & set(model_sets):
            declared_by.setdefault(key, []).append(path.stem)
        return load_recipe(str(path), overrides=own + [model_sets[k] for k in sorted(declared & set(model_sets))])

    target_own = [o for o in overrides if o not in model_sets.values()]
    target = load(target_path, target_own)
    for_dependencies = [_dataset_override(target), *plan_wide]
    order: list[LoadedRecipe] = []

    def visit(item: LoadedRecipe, stack: tuple[str, ...]) -> None:
        name = item.recipe.name
        if name in stack:
            raise RecipeValidationError(f"Recipes depend on each other in a cycle: {' -> '.join(stack + (name,))}")
        if any(o.recipe.name == name for o in order):
            return
        for dep_name in _dependencies(item):
            dep_path = find_recipe(dep_name, search_dir=item.base_dir)
            visit(load(dep_path, for_dependencies), stack + (name,))
        order.append(item)

    visit(target, ())
    unused = sorted(set(model_sets) - set(declared_by))
    if unused:
        declared = sorted({k for o in order for k in o.recipe.models})
        raise RecipeValidationError(
            f"--set {model_sets[unused[0]]}: no recipe of the plan ({', '.join(o.recipe.name for o in order)}) "
            f"has a model {unused[0]!r}; models they declare: {', '.join(declared)}."
        )
    _check_model_references(order)
    for item in order[:-1]:
        if item.recipe.dataset != target.recipe.dataset:
            log.info("Recipe %r runs on the plan's dataset", item.recipe.name)
    scope, info = scope_of(order)
    return Plan(order, scope, info)


def _check_model_references(order: list[LoadedRecipe]) -> None:
    by_name = {o.recipe.name: o.recipe for o in order}
    for item in order:
        for key, source in item.recipe.models.items():
            if not isinstance(source, RecipeOutput):
                continue
            dep = by_name[source.recipe]
            if source.stage not in dep.stage_names or not dep.stage(source.stage).produces_model:
                made = [s.name for s in dep.stages if s.produces_model]
                raise RecipeValidationError(
                    f"{item.path}: models -> {key} takes stage {source.stage!r} of recipe "
                    f"{source.recipe!r}, which has no such model-producing stage; allowed: {made}"
                )


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit] or "x"


def starting_models(order: list[LoadedRecipe]) -> list[str]:
    """The plan's models that no recipe of it makes: Hub ids, or absolute local folders."""
    found = []
    for item in order:
        for source in item.recipe.models.values():
            if isinstance(source, str):
                local = looks_local(source, item.base_dir)
                found.append(str((item.base_dir / source).expanduser().resolve()) if local else source)
    return list(dict.fromkeys(found))


def scope_of(order: list[LoadedRecipe]) -> tuple[str, dict]:
    """The plan's folder name under the output root, and what it stands for."""
    target = order[-1]
    dataset = json.loads(_dataset_override(target).partition("=")[2])
    models = starting_models(order)
    info = {"dataset": dataset, "models": sorted(models), "seed": target.recipe.seed}
    digest = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:8]
    data_name = Path(dataset["id"]).name + (f"-{dataset['config']}" if dataset.get("config") else "")
    model_name = Path(models[0]).name if models else "no-model"
    return f"{_slug(data_name)}_{_slug(model_name)}_{digest}", info
