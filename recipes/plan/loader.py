"""Find, read, override and validate recipe files; every mistake becomes one clear message.

Messages name the file, the field path, the line, and what is allowed, e.g.::

    recipes/catalog/kd.yaml: unknown field 'alhpa' (did you mean 'alpha'?), in stages -> distill -> alhpa,
    line 14, column 5
      14 |     alhpa: 0.5
    Allowed fields: alpha, batch_size, epochs, ...
"""

from __future__ import annotations

import difflib
import hashlib
import re
import types
import typing
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import RecipeNotFoundError, RecipeValidationError
from ..stages import STAGE_TYPES
from .bounds import MAX_INT_DIGITS
from .schema import Recipe
from .sources import exists

CATALOG_DIR = Path(__file__).resolve().parents[1] / "catalog"


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
        if exists(path):
            return path  # reading it says what else is wrong (a folder, no permission)
        raise RecipeNotFoundError(f"Recipe file {name_or_path} does not exist.")
    for folder in ([search_dir] if search_dir else []) + [CATALOG_DIR]:
        candidate = folder / f"{name_or_path}.yaml"
        if exists(candidate):
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
    text = _read_text(path)
    node, raw = _parse_recipe(text, path)
    for item in overrides:
        apply_override(raw, item, path)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeValidationError(format_validation_error(err, path, raw, node, text)) from None
    return LoadedRecipe(recipe, path, text, list(overrides))


# --- reading YAML --------------------------------------------------------------------------

#: Far above any real recipe (a few KB, nesting depth 5, a few hundred values), far below harm.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_VALUES = 10_000

_YAML_TAG = "tag:yaml.org,2002:"
#: The only YAML types a recipe holds; ``merge`` keeps ``<<: *anchor`` working.
_PLAIN_TAGS = {_YAML_TAG + t for t in ("null", "bool", "int", "float", "str", "seq", "map", "merge")}
_MAPPING_HINT = (
    "a recipe is a YAML mapping with name, description, dataset, models and stages (see recipes/catalog/kd.yaml)"
)


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but that a recipe may not hold; ``problem`` is the whole message."""

    def __init__(self, problem: str, mark):
        super().__init__(problem=problem, problem_mark=mark)


class _RecipeYAMLLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses what a recipe never needs, with the line it is on.

    Refused: a key twice in one mapping (PyYAML keeps the last silently), nesting deeper than
    ``MAX_DEPTH`` (PyYAML recurses per level), more than ``MAX_VALUES`` values once aliases are
    expanded (an alias bomb) or an alias inside its own anchor, a whole number of more than
    ``MAX_INT_DIGITS`` digits (Python refuses to read one past 4300), and any tag but the plain
    types. Dates and ``=`` stay strings instead of becoming timestamps or failing.
    """

    yaml_constructors = {tag: fn for tag, fn in yaml.SafeLoader.yaml_constructors.items() if tag in _PLAIN_TAGS}
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag in _PLAIN_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it holds, aliases expanded
        self._keys: dict[int, str] = {}  # id(value node) -> its key, for messages

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise _Refused(f"the alias at line {mark.line + 1} refers to the value that contains it", mark)
            return node
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"values nested deeper than {MAX_DEPTH} levels at line {mark.line + 1}", mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        children = node.value if isinstance(node, yaml.SequenceNode) else []
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        size = self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in children)
        if size > MAX_VALUES:
            raise _Refused(
                f"the value at line {mark.line + 1} holds more than {MAX_VALUES} values (aliases expanded); "
                "a recipe holds a few hundred",
                mark,
            )
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self._refuse_duplicate_keys(node)
            self._keys.update((id(v), k.value) for k, v in node.value if isinstance(k, yaml.ScalarNode))
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        digits = len(node.value.replace("_", "").lstrip("+-"))
        if digits > MAX_INT_DIGITS:
            line = node.start_mark.line + 1
            what = repr(self._keys[id(node)]) if id(node) in self._keys else "a number"
            raise _Refused(
                f"{what} at line {line} has {digits} digits; a recipe's whole numbers have at most {MAX_INT_DIGITS} "
                "(the largest setting, seed, is at most 4294967295)",
                node.start_mark,
            )
        return super().construct_yaml_int(node)

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        """Before merges are flattened: a merged key may be overridden, a written one not."""
        first_seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == _YAML_TAG + "merge":
                continue
            key = self.construct_object(key_node)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it with its own message
            if key in first_seen:
                line, first = key_node.start_mark.line + 1, first_seen[key].line + 1
                problem = f"duplicate key {key!r} at line {line} (first at line {first}); keep one"
                raise _Refused(problem, key_node.start_mark)
            first_seen[key] = key_node.start_mark

    def construct_undefined(self, node):
        tag = node.tag.replace(_YAML_TAG, "!!", 1)
        raise _Refused(
            f"tag {tag!r} at line {node.start_mark.line + 1} is not allowed: a recipe holds plain values "
            "(text, numbers, true/false, null, lists and mappings)",
            node.start_mark,
        )


_RecipeYAMLLoader.add_constructor(None, _RecipeYAMLLoader.construct_undefined)
_RecipeYAMLLoader.add_constructor(_YAML_TAG + "int", _RecipeYAMLLoader.construct_yaml_int)
# YAML 1.1 (PyYAML) reads 1e-4 and 1.5e3 as text: an exponent needs a dot and a sign there. Values
# keep their type (strict specs), so they are read as YAML 1.2 reads them: numbers.
_RecipeYAMLLoader.add_implicit_resolver(
    _YAML_TAG + "float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _load_yaml(text: str):
    """The node tree (for line numbers) and the data of one YAML document; (None, None) if empty."""
    loader = _RecipeYAMLLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """What is wrong, with its line and column: one line, no PyYAML internals."""
    if isinstance(err, _Refused):
        return err.problem
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        return f"not valid YAML, line {line}: character {chr(err.character)!r} is not allowed ({err.reason})"
    mark = err.problem_mark or err.context_mark
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = err.problem or err.context
    if err.problem and err.context:
        started = f" at line {err.context_mark.line + 1}" if err.context_mark else ""
        problem += f" ({err.context}{started})"
    return f"not valid YAML{where}: {problem}"


def _read_text(path: Path) -> str:
    """The file's text; a folder, an unreadable, oversized, binary or non-UTF-8 file is an error."""
    try:
        if not path.is_file():
            kind = "a directory" if path.is_dir() else "a special file (a pipe, socket or device)"
            raise RecipeNotFoundError(f"{path}: is {kind}, not a recipe file.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RecipeValidationError(f"{path}: {size} bytes is too large for a recipe (at most {MAX_FILE_BYTES}).")
        data = path.read_bytes()
    except OSError as err:
        raise RecipeNotFoundError(f"{path}: cannot read the file: {err.strerror or err}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise RecipeValidationError(f"{path}: a binary file (NUL byte at offset {nul}), not a YAML recipe.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise RecipeValidationError(
            f"{path}: not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} (line {line}) "
            "cannot be decoded; save the file as UTF-8."
        ) from None


def _parse_recipe(text: str, path: Path) -> tuple[yaml.Node, dict]:
    try:
        node, raw = _load_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        excerpt = _excerpt(text.splitlines(), mark.line + 1) if mark else ""
        raise RecipeValidationError(f"{path}: {_yaml_problem(err, text)}{excerpt}") from None
    if raw is None:
        raise RecipeValidationError(f"{path}: the file is empty; {_MAPPING_HINT}.")
    if not isinstance(raw, dict):
        raise RecipeValidationError(f"{path}: the top level is {_kind(raw)}; {_MAPPING_HINT}.")
    return node, raw


def _kind(value) -> str:
    kinds = {list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


# --- overrides -----------------------------------------------------------------------------


def _model_class(annotation) -> type[BaseModel] | None:
    """The pydantic model in ``annotation`` (``X``, ``X | None``, a union holding ``X``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _model_class(args[0])
    if origin not in (typing.Union, types.UnionType):
        return None
    return next(filter(None, map(_model_class, args)), None)


class _AnyKey(typing.NamedTuple):
    """A dict field (``models``, ``space``): any key, each value typed ``value``."""

    value: object


def _section(annotation) -> type[BaseModel] | _AnyKey | None:
    """What ``--set`` may descend into from a field typed ``annotation``; None for a value."""
    if typing.get_origin(annotation) is dict:
        return _AnyKey(typing.get_args(annotation)[1])
    return _model_class(annotation)


def _no_field(item: str, where: str, name: str, allowed: list[str]) -> RecipeValidationError:
    bare = {a.removesuffix(".<field>"): a for a in allowed}
    close = difflib.get_close_matches(name, list(bare), n=1)
    hint = f" Did you mean {bare[close[0]]!r}?" if close else ""
    return RecipeValidationError(
        f"--set {item}: {where} has no field {name!r}.{hint} Allowed: {', '.join(sorted(allowed))}."
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _stages_by_name(raw: dict) -> dict[str, dict]:
    stages = raw.get("stages")
    if not isinstance(stages, list):
        return {}
    return {s["name"]: s for s in stages if isinstance(s, dict) and isinstance(s.get("name"), str)}


def _upstream_recipes(raw: dict) -> list[str]:
    models = raw.get("models")
    if not isinstance(models, dict):
        return []
    return sorted({m["recipe"] for m in models.values() if isinstance(m, dict) and isinstance(m.get("recipe"), str)})


#: The longest --set item a message shows whole.
MAX_SHOWN = 100


def _override_value(item: str, text: str):
    try:
        return _load_yaml(text)[1]
    except yaml.YAMLError as err:
        raise RecipeValidationError(
            f"--set {item}: {_yaml_problem(err, text)}. Values are YAML: 2, 0.3, [0, 2], text; "
            "quote text that YAML would read otherwise: 'a: b'."
        ) from None


def apply_override(raw: dict, item: str, path: Path) -> None:
    """Apply ``a.b.c=value`` to the raw recipe; a path that names no field is an error.

    The first part may be a stage name (``distill.alpha=0.3``, ``search.space.alpha.low=0.1``)
    or a top-level field (``dataset.max_samples.train=200``). Values are parsed as YAML
    (``2``, ``0.3``, ``[0, 2]``), with the checks a recipe file gets.
    """
    key, has_value, value_text = item.partition("=")
    if len(item) > MAX_SHOWN:  # messages show the item: a long one is cut
        item = item[:MAX_SHOWN] + "..."
    if not has_value:
        raise RecipeValidationError(f"--set {item!r}: expected FIELD=VALUE, e.g. distill.alpha=0.3")
    parts = key.strip().split(".")
    if "" in parts:
        raise RecipeValidationError(
            f"--set {item}: the field path {key.strip()!r} has an empty part; "
            "expected names joined by single dots, e.g. distill.alpha=0.3"
        )
    value = _override_value(item, value_text)
    stages = _stages_by_name(raw)
    if parts[0] in stages and len(parts) > 1:
        stage = stages[parts[0]]
        stage_type = STAGE_TYPES.get(stage.get("type")) if isinstance(stage.get("type"), str) else None
        if stage_type is None:
            raise RecipeValidationError(
                f"--set {item}: stage {parts[0]!r} has type {_short(stage.get('type'))}, which is not a stage type; "
                f"allowed types: {', '.join(sorted(STAGE_TYPES))}."
            )
        _assign(item, stage, stage_type.spec, parts, 1, value, f"stage {parts[0]!r} ({stage['type']})")
    elif parts[0] in Recipe.model_fields:
        _assign(item, raw, Recipe, parts, 0, value, "the recipe")
    else:
        raise _unknown_top_level(item, parts[0], raw, stages)


def _unknown_top_level(item: str, name: str, raw: dict, stages: dict) -> RecipeValidationError:
    if name in stages:
        return RecipeValidationError(f"--set {item}: a stage is set field by field: --set {name}.<field>=VALUE.")
    error = _no_field(item, "the recipe", name, list(Recipe.model_fields) + [f"{s}.<field>" for s in stages])
    upstream = _upstream_recipes(raw)
    if upstream:
        error = RecipeValidationError(
            f"{error.message} Overrides apply to this recipe only; to change a stage of "
            f"{', '.join(upstream)}, run that recipe with --set first."
        )
    return error


def _assign(item: str, target: dict, section, parts: list[str], first: int, value, where: str) -> None:
    """Set ``parts[first:]`` under ``target``, a mapping shaped by ``section``; ``where`` names it."""
    for depth in range(first, len(parts)):
        part = parts[depth]
        if isinstance(section, _AnyKey):
            annotation = section.value
        elif part in section.model_fields:
            annotation = section.model_fields[part].annotation
        else:
            raise _no_field(
                item, where if depth == first else repr(".".join(parts[:depth])), part, list(section.model_fields)
            )
        if depth == len(parts) - 1:
            target[part] = value
            return
        dotted = ".".join(parts[: depth + 1])
        section = _section(annotation)
        if section is None:
            hint = " (a stage's field is set as STAGE.FIELD=VALUE)" if dotted == "stages" else ""
            raise RecipeValidationError(
                f"--set {item}: {dotted!r} holds a value, not fields; set it whole: --set {dotted}=VALUE{hint}."
            )
        if target.get(part) is None:
            target[part] = {}
        elif not isinstance(target[part], dict):
            raise RecipeValidationError(
                f"--set {item}: {dotted!r} is {_short(target[part])}, not a mapping; "
                f"set it whole: --set {dotted}=VALUE."
            )
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
    """``stages -> distill -> alpha``: stage indexes become stage names, union tags vanish.

    A part that is not in the data is a union tag (``distill``, ``recipe-output``) unless it
    is the last one: a missing or unknown field."""
    out, parent = [], raw
    for index, part in enumerate(loc):
        if isinstance(parent, list) and isinstance(part, int) and part < len(parent):
            item = parent[part]
            name = item.get("name") if isinstance(item, dict) else None
            out.append(str(name) if name else str(part))
            parent = item
        elif isinstance(parent, dict) and part in parent:
            out.append(str(part))
            parent = parent[part]
        elif isinstance(parent, dict) and index == len(loc) - 1:
            out.append(str(part))
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
    if kind == "finite_number":
        return "must be a finite number, not .inf or .nan", ""
    if kind in _WANTED:
        return _type_problem(kind, err.get("input")), ""
    return msg.removeprefix("Value error, "), ""


#: What a field wants, by pydantic's error type; values are never converted (strict specs).
_WANTED = {
    "int_type": "a whole number (e.g. 3)",
    "float_type": "a number (e.g. 0.5)",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list (e.g. [0, 2])",
    "dict_type": "a mapping (e.g. {train: 300})",
}
#: The YAML types that a quoted value, for a field of each error type, was meant as.
_UNQUOTED = {"int_type": int, "float_type": (int, float), "bool_type": bool}


def _given(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the text {_short(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return _kind(value)


def _type_problem(kind: str, value) -> str:
    """``must be a number (e.g. 0.5), not the text '0.5'; write it without quotes``."""
    problem = f"must be {_WANTED[kind]}, not {_given(value)}"
    if kind == "string_type" and isinstance(value, (bool, int, float)):
        return f"{problem}; quote it to mean text"
    if isinstance(value, str) and kind in _UNQUOTED:
        unquoted = _yaml_scalar(value)
        if isinstance(unquoted, _UNQUOTED[kind]) and isinstance(unquoted, bool) == (kind == "bool_type"):
            return f"{problem}; write it without quotes"
    return problem


def _yaml_scalar(text: str):
    """What ``text`` reads as in YAML without its quotes; None if it does not read."""
    try:
        return _load_yaml(text)[1]
    except yaml.YAMLError:
        return None


def _excerpt(lines: list[str], line_no: int) -> str:
    """The recipe's line ``line_no`` (1-based) under a message, cut to a screen width."""
    if not 1 <= line_no <= len(lines):
        return ""
    line = lines[line_no - 1]
    return f"\n    {line_no:>4} | {line if len(line) <= 120 else line[:117] + '...'}"


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
            excerpt = _excerpt(lines, line_no)
        out.append(f"- {problem}, in {where}{line_info}{excerpt}")
        if remedy:
            out.append(f"  {remedy}")
    return "\n".join(out)
