"""The YAML metadata block at the top of a README card (``---`` ... ``---``), as JSON-safe data.

Any client can commit a README, and its metadata goes out as ``cardData`` in every repo info
reply, so the YAML is read with :class:`CardLoader`: a ``SafeLoader`` whose values are JSON's
(a date or timestamp becomes its ISO text, ``!!binary`` its base64 text, a ``!!set`` a list,
a key that is not a string its JSON text, NaN and infinities null, an integer past 64 bits
its text) and whose cost is bounded: at most :data:`MAX_CHARS` of YAML, values nested at most
:data:`MAX_DEPTH` deep and :data:`MAX_SIZE` in all once aliases are expanded (a 365-byte alias
bomb otherwise expands to tens of megabytes), and no alias inside its own anchor. The bounds
are counted while the nodes are composed, before anything is built (as ``recipes/loader.py``
bounds recipes).
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

# Same block as huggingface_hub.repocard.REGEX_YAML_BLOCK.
YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
MAX_CHARS = 1_000_000  # of YAML; PyYAML reads a few hundred KB a second
MAX_DEPTH = 64
MAX_SIZE = 2_000_000  # values plus the characters of scalars, aliases expanded
_INT64 = range(-(2**63), 2**63)  # JSON clients read integers past it wrongly, or not at all
_DECIMAL = re.compile(r"[-+]?[1-9][0-9_]*")  # PyYAML's decimal form, the one int() limits to 4300 digits


class _Refused(yaml.YAMLError):
    """A bound of :class:`CardLoader` was passed; the message says which."""


class CardLoader(yaml.SafeLoader):
    """``SafeLoader`` with JSON values and bounded depth and expanded size (see the module docstring)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._measures: dict[int, tuple[int, int]] = {}  # id(node) -> (size, depth), aliases expanded

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._measures:
                raise _Refused(f"the alias at line {mark.line + 1} refers to the value that contains it")
            return node
        if self._depth >= MAX_DEPTH:  # PyYAML composes recursively: stop before Python's own limit
            raise _Refused(f"values are nested deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._measure(node, mark.line + 1)
        return node

    def _measure(self, node: yaml.Node, line: int) -> None:
        """Record the size and depth of ``node`` with its aliases expanded; refuse it over the bounds."""
        if isinstance(node, yaml.ScalarNode):
            size, depth = 1 + len(node.value), 1
        else:
            children = node.value
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            measures = [self._measures[id(child)] for child in children]
            size = 1 + sum(s for s, _ in measures)
            depth = 1 + max((d for _, d in measures), default=0)
        if size > MAX_SIZE or depth > MAX_DEPTH:
            raise _Refused(
                f"the value at line {line} expands to more than {MAX_SIZE} characters or {MAX_DEPTH} levels"
                " once its aliases are expanded"
            )
        self._measures[id(node)] = (size, depth)

    def construct_object(self, node, deep=False):
        """PyYAML's constructors raise ValueError, KeyError... on a bad explicitly tagged scalar
        (``!!int x``, ``!!bool x``, ``!!timestamp x``): one YAML error with the line instead."""
        try:
            return super().construct_object(node, deep=deep)
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
            problem = f"cannot read this {node.tag} value ({str(exc)[:200]})"
            raise ConstructorError(None, None, problem, node.start_mark) from None

    def construct_yaml_int(self, node):
        try:
            value = super().construct_yaml_int(node)
        except ValueError:
            if not _DECIMAL.fullmatch(node.value):
                raise
            return node.value  # more digits than Python converts (4300): far past 64 bits
        return value if value in _INT64 else node.value

    def construct_yaml_float(self, node):
        value = super().construct_yaml_float(node)
        return value if math.isfinite(value) else None

    def construct_yaml_timestamp(self, node):
        return super().construct_yaml_timestamp(node).isoformat()

    def construct_yaml_binary(self, node):
        return base64.b64encode(super().construct_yaml_binary(node)).decode("ascii")

    def construct_yaml_set(self, node):
        return list(self.construct_mapping(node))

    def construct_yaml_map(self, node):
        data: dict[str, Any] = {}
        yield data  # the empty dict first, as PyYAML does
        self.flatten_mapping(node)  # merges ``<<: *anchor``
        # Pairs, not PyYAML's dict, so keys 1 and true stay two keys; deep, so an anchored mapping is
        # complete when an alias of it is a key (the depth is bounded).
        for key_node, value_node in node.value:
            key = _json_key(self.construct_object(key_node, deep=True))
            data[key] = self.construct_object(value_node, deep=True)


for _tag, _constructor in {
    "int": CardLoader.construct_yaml_int,
    "float": CardLoader.construct_yaml_float,
    "timestamp": CardLoader.construct_yaml_timestamp,
    "binary": CardLoader.construct_yaml_binary,
    "set": CardLoader.construct_yaml_set,
    "map": CardLoader.construct_yaml_map,
}.items():
    CardLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _constructor)


def _json_key(key: Any) -> str:
    """A key as a JSON object's: a string stays, others become their JSON text (``1`` -> ``"1"``, ``[a]``
    -> ``'["a"]'``)."""
    return key if isinstance(key, str) else json.dumps(key)


def card_metadata(text: str) -> dict[str, Any]:
    """The card's metadata as a JSON-safe dict (``{}`` without a block); ValueError if it is refused."""
    match = YAML_BLOCK.search(text)
    if match is None:
        return {}
    block = match.group(2)
    if len(block) > MAX_CHARS:
        raise ValueError(f"README.md metadata is {len(block)} characters; the local Hub reads {MAX_CHARS} at most.")
    try:
        data = _load(block)
    except yaml.YAMLError as exc:
        raise ValueError(f"README.md metadata is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("README.md metadata must be a YAML mapping (key: value lines).")
    return data


def _load(text: str) -> Any:
    loader = CardLoader(text)  # raises already on a character YAML does not allow
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def file_card_metadata(path: Path) -> dict[str, Any]:
    """The metadata of the README at ``path``; ``{}`` if it has none, or none the local Hub can read.

    Only the head that can hold the block is read, so a huge README costs no more than a small
    one; bytes that are not UTF-8 read as U+FFFD, as on the repo page.
    """
    with open(path, "rb") as source:
        head = source.read(4 * MAX_CHARS + 64)  # UTF-8 takes up to 4 bytes a character
    try:
        return card_metadata(head.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
