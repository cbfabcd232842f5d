"""The project's layers, read from the source: who may import whom, no cycles, no stage type named
outside its module. Static checks (the syntax trees of every module), so they run in a second."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from recipes.stages import STAGE_TYPES

ROOT = Path(__file__).resolve().parents[1]
#: What the Hub side may import of ``recipes``: its public API (the package) and its records.
HUB_SIDE_MAY_IMPORT = {"recipes", "recipes.errors", "recipes.runfolder"}


def modules(*packages: str) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package), for every module of ``packages``."""
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:``: annotations, never imported at run time."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skipped |= {id(n) for sub in node.body for n in ast.walk(sub)}
    return skipped


def imports(module: str, path: Path, is_package: bool, known: set[str]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in the file, in function bodies too (an import
    inside a function is a dependency all the same): ``from pkg import sub`` counts as ``pkg.sub``
    when ``sub`` is a module, as ``pkg`` otherwise."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            subs = [f"{base}.{alias.name}" for alias in node.names]
            found += [(sub, node.lineno) for sub in subs if sub in known]
            if any(sub not in known for sub in subs):
                found.append((base, node.lineno))
    return found


def import_graph(*packages: str) -> dict[str, set[str]]:
    known = modules(*packages)
    return {
        name: {
            target for target, _ in imports(name, path, is_package, set(known)) if target in known and target != name
        }
        for name, (path, is_package) in known.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_hub_side_imports_only_the_public_api_and_the_records_of_recipes():
    known = set(modules("recipes", "hubtools"))
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for name, (path, is_package) in modules("hubtools").items()
        for target, line in imports(name, path, is_package, known)
        if target.split(".")[0] == "recipes" and target not in HUB_SIDE_MAY_IMPORT
    ]
    assert not wrong, "hubtools reaches into recipes' machinery:\n" + "\n".join(wrong)


def test_recipes_never_imports_the_hub_side():
    known = set(modules("recipes", "hubtools"))
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for name, (path, is_package) in modules("recipes").items()
        for target, line in imports(name, path, is_package, known)
        if target.split(".")[0] == "hubtools"
    ]
    assert not wrong, "recipes depends on hubtools (publish through the entry point instead):\n" + "\n".join(wrong)


def test_no_import_cycles_not_even_inside_functions():
    assert cycles(import_graph("recipes", "hubtools")) == []


def test_the_cycle_finder_finds_a_hidden_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _string_constants(path: Path) -> list[tuple[str, int]]:
    """The file's string literals, but the Hub's ``base_model_relation`` words (``relation=...``,
    :data:`recipes.runfolder.RELATIONS`): ``"finetune"`` there is a Hub term, not the stage type."""
    tree = ast.parse(path.read_text())
    hub_terms = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "relation":
            hub_terms.add(id(node.value))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "RELATIONS" for t in node.targets):
            hub_terms |= {id(n) for n in ast.walk(node.value)}
    return [
        (node.value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in hub_terms
    ]


def test_no_stage_type_is_named_outside_its_module():
    """Every consumer asks the registry: no module but a type's own holds its name as a string."""
    own = {name: Path(importlib.util.find_spec(t.run.__module__).origin) for name, t in STAGE_TYPES.items()}
    named = [
        f"{path.relative_to(ROOT)}:{line} names stage type {value!r}"
        for _, (path, _) in modules("recipes", "hubtools").items()
        for value, line in _string_constants(path)
        if value in own and own[value] != path
    ]
    assert not named, "\n".join(named)


@pytest.mark.parametrize("stage_type", sorted(STAGE_TYPES))
def test_every_stage_type_is_found_in_its_own_module(stage_type):
    module = STAGE_TYPES[stage_type].run.__module__
    assert module.startswith("recipes.stages.") and module != "recipes.stages.base"
