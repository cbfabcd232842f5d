"""A stage's cache key: everything that shapes its result, and why two keys differ.

The key holds the stage's resolved spec, its inputs' content fingerprints, the rows it reads,
the seed, the code that makes it (the stage's module and every ``recipes`` module it imports,
hashed as syntax trees without docstrings, so a comment or a reformat changes nothing) and
the versions of the libraries its stage type declares (``register(..., libraries=...)``).
:func:`key_changes` turns two keys into readable reasons: ``onnxruntime 1.31.0 -> 1.32.0``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from importlib import metadata

#: Modules left out of every code hash: the package (the public API) and the registry package,
#: which import everything.
NOT_CODE = {"recipes", "recipes.stages"}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """``recipes.*`` modules that ``module`` imports anywhere (function bodies included)."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from . import distill`
    return {m for m in found if m.split(".")[0] == "recipes" and _is_module(m)}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError):  # a name inside a module, e.g. recipes.stages.base.register
        return False


def _module_digest(module: str) -> tuple[str, frozenset[str]]:
    spec = importlib.util.find_spec(module)
    source = open(spec.origin, encoding="utf-8").read()
    tree = ast.parse(source)
    imports = _imported_modules(tree, module, spec.submodule_search_locations is not None)
    digest = hashlib.sha256(ast.dump(_strip_docstrings(tree)).encode()).hexdigest()[:16]
    return digest, frozenset(imports)


def code_fingerprints(module: str) -> dict[str, str]:
    """``module`` and every ``recipes`` module it reaches through imports -> digest of its code."""
    out: dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in out or name in NOT_CODE:
            continue
        out[name], imports = _module_digest(name)
        todo.extend(imports)
    return dict(sorted(out.items()))


def library_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def stage_key(spec, stage_type, inputs: dict[str, str], data: str | None, seed: int) -> dict:
    """The cache key of one stage (``stage_type``: its registry entry)."""
    return {
        "spec": spec.model_dump(mode="json"),
        "inputs": dict(sorted(inputs.items())),
        "data": data,
        "seed": seed,
        "code": code_fingerprints(stage_type.run.__module__),
        "libraries": library_versions(stage_type.libraries),
    }


def fingerprint(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _changed(old: dict, new: dict) -> list[tuple[str, object, object]]:
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def key_changes(old: dict, new: dict) -> list[str]:
    """Readable reasons why ``old`` (a stage record's key) and ``new`` differ."""
    reasons = []
    for name, before, after in _changed(old.get("libraries", {}), new["libraries"]):
        reasons.append(f"{name} {before or 'absent'} -> {after or 'absent'}")
    code = [name for name, _, _ in _changed(old.get("code", {}), new["code"])]
    if code:
        reasons.append(f"code changed: {', '.join(code)}")
    settings = [f"{k} {a!r} -> {b!r}" for k, a, b in _changed(old.get("spec", {}), new["spec"])]
    if settings:
        reasons.append(f"settings changed: {', '.join(settings)}")
    inputs = [k for k, _, _ in _changed(old.get("inputs", {}), new["inputs"])]
    if inputs:
        reasons.append(f"input changed: {', '.join(inputs)}")
    if old.get("data") != new["data"]:
        reasons.append("dataset rows changed")
    if old.get("seed") != new["seed"]:
        reasons.append(f"seed {old.get('seed')} -> {new['seed']}")
    return reasons or ["key changed"]
