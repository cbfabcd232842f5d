"""``python -m recipes list | check [NAME...|--all] | run NAME [--set F=V] [--force STAGE] | runs``.

Exit codes: 0 ok; 1 a stage failed; 2 a mistake in a recipe, override, model, dataset or run
folder; 3 the run folder is in use by another run (``--no-wait``); 4 publishing failed;
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import RecipeError


def _cmd_list(args) -> int:
    from .api import catalog

    for name, description in catalog().items():
        print(f"{name:<16} {description or '(invalid: run `python -m recipes check ' + name + '`)'}")
    return 0


def _cmd_check(args) -> int:
    """Validate each recipe with the plan it would run (dependencies, references, cycles)."""
    from .api import load
    from .loader import catalog

    names = list(catalog()) if args.all or not args.names else args.names
    failed = 0
    for name in names:
        try:
            plan = load(name, args.set)
        except RecipeError as err:
            failed += 1
            print(f"error: {err.message}", file=sys.stderr)
            continue
        target = plan.target
        needs = f"  after: {', '.join(o.recipe.name for o in plan.order[:-1])}" if len(plan.order) > 1 else ""
        print(f"ok  {target.recipe.name:<16} {target.path}  stages: {' -> '.join(target.recipe.stage_names)}{needs}")
    return 2 if failed else 0


def _cmd_run(args) -> int:
    from .api import run

    result = run(
        args.name,
        args.set,
        output_dir=args.output_dir,
        publish=not args.no_publish,
        force=args.force,
        wait=not args.no_wait,
    )
    print(result.run_dir)
    return 0


def _cmd_runs(args) -> int:
    """Every run folder under the output root: scope, recipe, status, final model."""
    from .runfolder import find_runs

    rows = []
    for folder in find_runs(Path(args.output_dir)):
        try:
            record = folder.read_run()
            dataset = record.resolved["dataset"]
            status, data = record.status, f"{Path(dataset['id']).name}/{dataset.get('config') or '-'}"
        except RecipeError as err:
            status, data = f"unreadable: {err.message}", "?"
        rows.append((folder.scope, folder.recipe, status, data, str(folder.path)))
    if not rows:
        print(f"No runs under {args.output_dir}/ yet: python -m recipes run NAME")
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recipes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="List the catalog: name and one line each.").set_defaults(fn=_cmd_list)

    check = sub.add_parser("check", help="Validate recipes and their plans without running anything.")
    check.add_argument("names", nargs="*", help="Recipe names or .yaml paths (default: the whole catalog).")
    check.add_argument("--all", action="store_true", help="Check every catalog recipe.")
    check.set_defaults(fn=_cmd_check)

    run = sub.add_parser("run", help="Run a recipe end to end (cached stages are skipped).")
    run.add_argument("name", help="Recipe name (see `list`) or path to a .yaml file.")
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="Rerun STAGE even if cached.")
    run.add_argument("--no-publish", action="store_true", help="Do not push recipes that have a `publish:` section.")
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="If another run holds a run folder, stop (exit 3) instead of waiting for it.",
    )
    run.set_defaults(fn=_cmd_run)
    for p in (check, run):
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="Override a field, e.g. distill.alpha=0.3, dataset.id=./my-data, models.teacher=org/clf. "
            "dataset.*, models.* and seed apply to every recipe of the plan.",
        )

    runs = sub.add_parser("runs", help="List the run folders: scope, recipe, status, dataset.")
    runs.set_defaults(fn=_cmd_runs)
    for p in (run, runs):
        p.add_argument("--output-dir", default="outputs", help="Root of the run folders (default: outputs).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.command == "run":
            from .progress import configure_progress

            configure_progress()
        return args.fn(args)
    except RecipeError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
