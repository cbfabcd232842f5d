"""``python -m recipes list | check [NAME...|--all] | run NAME [--set F=V] [--force STAGE]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import RecipeError


def _cmd_list(args) -> int:
    from .loader import catalog, load_recipe

    for name, path in catalog().items():
        try:
            description = load_recipe(str(path)).recipe.description.strip().splitlines()[0]
        except RecipeError:
            description = "(invalid: run `python -m recipes check " + name + "`)"
        print(f"{name:<16} {description}")
    return 0


def _cmd_check(args) -> int:
    from .loader import catalog, load_recipe

    names = list(catalog()) if args.all or not args.names else args.names
    failed = 0
    for name in names:
        try:
            loaded = load_recipe(name, overrides=args.set)
        except RecipeError as err:
            failed += 1
            print(err.message, file=sys.stderr)
            continue
        print(f"ok  {loaded.recipe.name:<16} {loaded.path}  stages: {' -> '.join(loaded.recipe.stage_names)}")
    return 2 if failed else 0


def _cmd_run(args) -> int:
    from .loader import load_recipe
    from .runner import Runner

    loaded = load_recipe(args.name, overrides=args.set)
    Runner(output_root=Path(args.output_dir), force=tuple(args.force), publish=not args.no_publish).run(loaded)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recipes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="List the catalog: name and one line each.").set_defaults(fn=_cmd_list)

    check = sub.add_parser("check", help="Validate recipes without running anything.")
    check.add_argument("names", nargs="*", help="Recipe names or .yaml paths (default: the whole catalog).")
    check.add_argument("--all", action="store_true", help="Check every catalog recipe.")
    check.set_defaults(fn=_cmd_check)

    run = sub.add_parser("run", help="Run a recipe end to end (cached stages are skipped).")
    run.add_argument("name", help="Recipe name (see `list`) or path to a .yaml file.")
    run.add_argument("--output-dir", default="outputs", help="Root of outputs/<recipe>/<stage>/ (default: outputs).")
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="Rerun STAGE even if cached.")
    run.add_argument("--no-publish", action="store_true", help="Do not push recipes that have a `publish:` section.")
    run.set_defaults(fn=_cmd_run)
    for p in (check, run):
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="Override a field, e.g. distill.alpha=0.3 or dataset.max_samples.train=200.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        return args.fn(args)
    except RecipeError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
