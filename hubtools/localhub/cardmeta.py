"""The YAML metadata block at the top of a README card (``---`` ... ``---``)."""

from __future__ import annotations

import re
from typing import Any

import yaml

# Same block as huggingface_hub.repocard.REGEX_YAML_BLOCK.
YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")


def card_metadata(text: str) -> dict[str, Any]:
    """The card's metadata as a dict (``{}`` without a block); ValueError if it is not a YAML mapping."""
    match = YAML_BLOCK.search(text)
    if match is None:
        return {}
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError as exc:
        raise ValueError(f"README.md metadata is not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ValueError("README.md metadata is nested too deeply to parse.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("README.md metadata must be a YAML mapping (key: value lines).")
    return data
