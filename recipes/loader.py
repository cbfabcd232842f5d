"""Find, read, override and validate recipe files; every mistake becomes one clear message.

Messages name the file, the field path, the line, and what is allowed, e.g.::

    recipes/catalog/kd.yaml: unknown field 'alhpa' (did you mean 'alpha'?), in stages -> distill -> alhpa, line 14, column 5
      14 |     alhpa: 0.5
    Allowed fields: alpha, batch_size, epochs, ...
"""

from __future__ import annotations

import difflib
import hashlib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from .errors import RecipeNotFoundError, RecipeValidationError
from .schema import Recipe
from .stages import STAGE_TYPES

CATALOG_DIR = Path(__file__).parent / "catalog"


@dataclass
class LoadedRecipe:
    """A validated recipe plus where it came from and what was overridden."""

    recipe: Recipe
    path: Path
    text: str
    overrides: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def catalog() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CATALOG_DIR.glob("*.yaml"))}


def find_recipe(name_or_path: str, search_dir: Path | None = None) -> Path:
    """A recipe file by path, or by name: next to ``search_dir`` first, then in the catalog."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if path.is_file():
            return path
        raise RecipeNotFoundError(f"Recipe file {name_or_path} does not exist.")
    for folder in ([search_dir] if search_dir else []) + [CATALOG_DIR]:
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    names = sorted(catalog())
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise RecipeNotFoundError(
        f"No recipe named {name_or_path!r}.{hint} Available: {', '.join(names)} "
        "(`python -m recipes list`), or pass a path to a .yaml file."
    )


def load_recipe(name_or_path: str, overrides: list[str] = (), search_dir: Path | None = None) -> LoadedRecipe:
    path = find_recipe(name_or_path, search_dir)
    text = path.read_text()
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeValidationError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise RecipeValidationError(f"{path}: a recipe is a YAML mapping with name, dataset, stages, ...")
    for item in overrides:
        apply_override(raw, item, path)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeValidationError(format_validation_error(err, path, raw, node, text)) from None
    return LoadedRecipe(recipe, path, text, list(overrides))


# --- overrides -----------------------------------------------------------------------------


def _model_class(annotation) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``X``, ``X | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_class(arg)
        if found is not None:
            return found
    return None


def _no_field(item: str, where: str, name: str, allowed: list[str]) -> RecipeValidationError:
    bare = {a.removesuffix(".<field>"): a for a in allowed}
    close = difflib.get_close_matches(name, list(bare), n=1)
    hint = f" Did you mean {bare[close[0]]!r}?" if close else ""
    return RecipeValidationError(
        f"--set {item}: {where} has no field {name!r}.{hint} Allowed: {', '.join(sorted(allowed))}."
    )


def apply_override(raw: dict, item: str, path: Path) -> None:
    """Apply ``a.b.c=value`` to the raw recipe; a path that names no field is an error.

    The first part may be a stage name (``distill.alpha=0.3``) or a top-level field
    (``dataset.max_samples.train=200``). Values are parsed as YAML (``2``, ``0.3``, ``[0, 2]``).
    """
    if "=" not in item:
        raise RecipeValidationError(f"--set {item!r}: expected FIELD=VALUE, e.g. distill.alpha=0.3")
    key, _, value_text = item.partition("=")
    parts = key.strip().split(".")
    value = yaml.safe_load(value_text) if value_text.strip() else None
    stages = {s.get("name"): s for s in raw.get("stages") or [] if isinstance(s, dict)}
    if parts[0] in stages and len(parts) == 2:
        stage = stages[parts[0]]
        stage_type = STAGE_TYPES.get(stage.get("type"))
        allowed = list(stage_type.spec.model_fields) if stage_type else []
        if parts[1] not in allowed:
            raise _no_field(item, f"stage {parts[0]!r} ({stage.get('type')})", parts[1], allowed)
        stage[parts[1]] = value
        return
    model, target = Recipe, raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if model is None:  # inside a dict field (e.g. models.<key>): any key is allowed
            if last:
                target[part] = value
            else:
                target = target.setdefault(part, {})
            continue
        allowed = list(model.model_fields)
        if part not in allowed:
            where = "the recipe" if depth == 0 else f"'{'.'.join(parts[:depth])}'"
            if depth == 0:
                allowed += [f"{name}.<field>" for name in stages]
            error = _no_field(item, where, part, allowed)
            upstream = sorted({m["recipe"] for m in (raw.get("models") or {}).values() if isinstance(m, dict) and "recipe" in m})
            if depth == 0 and upstream:
                error = RecipeValidationError(
                    f"{error.message} Overrides apply to this recipe only; to change a stage of "
                    f"{', '.join(upstream)}, run that recipe with --set first."
                )
            raise error
        if last:
            target[part] = value
            return
        annotation = model.model_fields[part].annotation
        model = None if typing.get_origin(annotation) is dict else _model_class(annotation)
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]


# --- error formatting ----------------------------------------------------------------------


def _locate(node, loc: tuple):
    """Walk the YAML node tree along a pydantic ``loc``; skip parts with no node (union tags)."""
    found = node
    for part in loc:
        if isinstance(found, yaml.MappingNode):
            match = next((v for k, v in found.value if k.value == part), None)
            if match is None:
                key = next((k for k, _ in found.value if k.value == part), None)
                if key is not None:
                    return key
                continue
            found = match
        elif isinstance(found, yaml.SequenceNode) and isinstance(part, int) and part < len(found.value):
            found = found.value[part]
    return found


def _readable_loc(loc: tuple, raw: dict) -> str:
    """``stages -> distill -> alpha``: stage indexes become stage names, union tags vanish."""
    out, parent = [], raw
    for part in loc:
        if isinstance(parent, list) and isinstance(part, int) and part < len(parent):
            item = parent[part]
            name = item.get("name") if isinstance(item, dict) else None
            out.append(str(name) if name else str(part))
            parent = item
        elif isinstance(parent, dict) and part in parent:
            out.append(str(part))
            parent = parent[part]
        elif isinstance(parent, dict) and part not in STAGE_TYPES:
            out.append(str(part))
            parent = None
    return " -> ".join(out) or "the recipe"


def _allowed_fields(err: dict, raw: dict) -> list[str]:
    """Field names allowed where an unknown key was found (for 'did you mean')."""
    loc = err["loc"][:-1]
    if loc and loc[0] == "stages" and len(loc) >= 2:
        stage_type = STAGE_TYPES.get(loc[2]) if len(loc) > 2 else None
        return list(stage_type.spec.model_fields) if stage_type else []
    model = Recipe
    for part in loc:
        model = _model_class(model.model_fields[part].annotation) if model and part in model.model_fields else None
    return list(model.model_fields) if model else []


def _message(err: dict, raw: dict) -> tuple[str, str]:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        allowed = _allowed_fields(err, raw)
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field {name!r}{hint}", f"Allowed fields: {', '.join(sorted(allowed))}." if allowed else ""
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"unknown stage type {tag!r}", f"Allowed types: {', '.join(sorted(STAGE_TYPES))}."
    if kind == "union_tag_not_found":
        return "stage has no 'type'", f"Allowed types: {', '.join(sorted(STAGE_TYPES))}."
    if kind == "missing":
        return "required field is missing", ""
    return msg.removeprefix("Value error, "), ""


def format_validation_error(err: ValidationError, path: Path, raw: dict, node, text: str) -> str:
    lines = text.splitlines()
    out = [f"{path}: {err.error_count()} problem(s):"]
    for e in err.errors():
        problem, remedy = _message(e, raw)
        where = _readable_loc(e["loc"], raw)
        target = _locate(node, e["loc"]) if node is not None else None
        line_info, excerpt = "", ""
        if target is not None and e["loc"]:
            line_no, col = target.start_mark.line + 1, target.start_mark.column + 1
            line_info = f", line {line_no}, column {col}"
            if line_no <= len(lines):
                excerpt = f"\n    {line_no:>4} | {lines[line_no - 1]}"
        out.append(f"- {problem}, in {where}{line_info}{excerpt}")
        if remedy:
            out.append(f"  {remedy}")
    return "\n".join(out)
