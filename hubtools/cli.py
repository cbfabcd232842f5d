"""``python -m hubtools <group> <command> ...``: the project's Hub tooling.

Each command group lives in its own module with a ``register(subparsers)`` function that
adds its parser and sets ``func`` (``args -> exit code``) on each command; list the module
in :data:`COMMAND_MODULES`. Errors of the :class:`~hubtools.errors.HubToolsError` family are
printed as one ``error: ...`` line and exit with the family's code, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from hubtools.errors import HubToolsError

COMMAND_MODULES = [
    "hubtools.localhub.cli",  # hub serve | seed | exec
    "hubtools.push",  # push
    "hubtools.verify",  # verify
    "hubtools.catalog",  # catalog
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hubtools", description="The project's Hub tooling.")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except HubToolsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
