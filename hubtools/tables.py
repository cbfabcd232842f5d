"""Markdown tables built in Python (the cards' templates only place them) and read back (verify)."""

from __future__ import annotations

import re
from typing import Any


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[Any]], right: set[int] = frozenset()) -> str:
    """A GitHub-flavoured table; columns whose index is in ``right`` are right-aligned."""
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(_cell(c) for c in line) + " |" for line in lines)


def parse_markdown_table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the first table in ``text`` whose first header cell is ``first_header``."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        cells = _split_row(line)
        if cells and cells[0] == first_header:
            rows = []
            for row_line in lines[start + 2 :]:
                if not row_line.startswith("|"):
                    break
                rows.append(dict(zip(cells, _split_row(row_line))))
            return rows
    raise ValueError(f"no table with first column {first_header!r}")


def _split_row(line: str) -> list[str]:
    if not line.startswith("|"):
        return []
    cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
    return [c.strip().replace("\\|", "|") for c in cells]
