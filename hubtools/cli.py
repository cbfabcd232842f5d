"""``python -m hubtools <group> <command> ...``: the project's Hub tooling.

Each command group lives in its own module with a ``register(subparsers)`` function that
adds its parser and sets ``func`` (``args -> exit code``) on each command; list the module
in :data:`COMMAND_MODULES`. The errors the project raises on purpose (the
:class:`~hubtools.errors.HubToolsError` and :class:`~recipes.errors.RecipeError` families)
and an unreachable Hub are printed as one ``error: ...`` line, without a traceback, and exit
with the code of :data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import textwrap
from collections.abc import Sequence

import requests

from hubtools.errors import HubToolsError
from recipes.errors import RecipeError

COMMAND_MODULES = [
    "hubtools.localhub.cli",  # hub serve | seed | exec
    "hubtools.push",  # push
    "hubtools.verify",  # verify
    "hubtools.catalog",  # catalog
]

#: Exit status -> what it means; printed by ``--help``.
EXIT_CODES = {
    0: "done",
    1: "an unexpected error (a stage or library failure, with its message)",
    2: "a mistake to fix: bad arguments or repo id, a run folder that is missing, unfinished or of another "
    "schema version, a dataset or model that cannot be loaded, a missing seed source",
    3: "the repo already publishes other metrics (push --overwrite replaces them)",
    4: "the Hub refused the request or could not be reached; nothing was committed",
    5: "verify: a number of the card does not match what the repo's files measure",
    6: "verify: the Hub could not be reached or did not answer in time, even after retries; nothing was verified",
    130: "interrupted",
}
UNREACHABLE = 4


def _epilog() -> str:
    lines = [
        textwrap.fill(meaning, 88, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7)
        for code, meaning in EXIT_CODES.items()
    ]
    return "exit status:\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hubtools",
        description="The project's Hub tooling.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except (HubToolsError, RecipeError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except (requests.ConnectionError, requests.Timeout) as exc:
        from huggingface_hub import constants

        print(
            f"error: cannot reach the Hub at {constants.ENDPOINT} ({exc.__class__.__name__}). "
            "Is it up (local: `make hub`) and HF_ENDPOINT right?",
            file=sys.stderr,
        )
        return UNREACHABLE
    except KeyboardInterrupt:
        return 130
