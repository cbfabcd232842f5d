"""``python -m recipes list | check [NAME...|--all] | run NAME [--set F=V] [--force STAGE] [--workers N] | runs
| cache [--prune] [--keep N] | worker NAME --stage STAGE [--set F=V] | bench [--recipes A,B] [--set F=V] [--readme]
| docs [--check] [--out PATH]``.

Exit codes: 0 ok; 1 a stage failed (``docs --check``: the stage reference is stale); 2 a mistake in a
recipe, override, model, dataset or run folder; 3 the run folder is in use by another run (``--no-wait``);
4 publishing failed; 130 interrupted (Ctrl-C); 143 stopped by SIGTERM (``run``, ``worker`` and ``bench``
treat it as Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path

from .errors import RecipeError


def _cmd_list(args) -> int:
    from .api import catalog

    for name, description in catalog().items():
        print(f"{name:<16} {description or '(invalid: run `python -m recipes check ' + name + '`)'}")
    return 0


def _cmd_check(args) -> int:
    """Validate each recipe with the plan it would run (dependencies, references, cycles), then
    hold the plan against its dataset and models as ``run`` does before its first stage."""
    from .api import load
    from .plan.loader import catalog

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
        workers=args.workers,
    )
    from .engine import distributed

    distributed.shutdown()
    if distributed.is_main():  # under torchrun, one line for the run, not one per process
        print(result.run_dir)
    return 0


def _cmd_worker(args) -> int:
    """Join a stage of a run that another process (or machine) runs: see :mod:`recipes.engine.worker`."""
    from .engine.worker import run_worker

    ran = run_worker(
        args.name,
        args.stage,
        args.set,
        output_dir=args.output_dir,
        recipe_name=args.recipe,
        threads=args.threads,
        wait_s=args.wait_s,
    )
    print(f"worker done: {ran} trial(s) run here")
    return 0


def _cmd_bench(args) -> int:
    """Run the catalog and measure every published model side by side: see :mod:`recipes.bench.catalog`."""
    from .bench.catalog import BenchSettings, run_bench
    from .bench.report import write_readme
    from .runfolder import BENCH_DIR, BENCH_RESULTS_FILE

    bench_dir = Path(args.bench_dir) if args.bench_dir else Path(args.output_dir) / BENCH_DIR
    if args.readme:
        print(write_readme(bench_dir / BENCH_RESULTS_FILE, Path(args.readme_file)))
        return 0
    settings = BenchSettings(
        rounds=args.rounds,
        runs=args.runs,
        warmup=args.warmup,
        sample=args.sample,
        batch_size=args.batch_size,
        threads=args.threads,
        alone_repeats=args.alone_repeats,
        peer=not args.no_peer,
    )
    names = [n for item in args.recipes for n in item.split(",") if n] or None
    catalog_dir = Path(args.catalog) if args.catalog else None
    result = run_bench(names, args.set, args.output_dir, bench_dir, catalog_dir, settings, run=not args.no_run)
    print(result.markdown())
    print(result.path)
    return 1 if result.data["skipped"].keys() - {"peer"} else 0


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


def _cmd_cache(args) -> int:
    """The run cache of every run folder: earlier results kept by key, and their size; ``--prune``
    keeps the ``--keep`` newest of each stage."""
    from .runfolder import CACHE_DIR, find_runs, output_files

    total, removed = 0, 0
    for folder in find_runs(Path(args.output_dir)):
        if args.prune:
            removed += len(folder.prune_cache(keep=args.keep))
        for slot in folder.cache_entries():
            size = sum((slot / name).stat().st_size for name in output_files(slot))
            total += size
            print(f"{size / 2**20:9.1f} MB  {slot.relative_to(folder.path.parent)}")
    if args.prune:
        print(f"Removed {removed} cached result(s); kept the {args.keep} newest of each stage.")
    print(f"{total / 2**20:.1f} MB in {CACHE_DIR}/ folders under {args.output_dir}/")
    return 0


def _cmd_docs(args) -> int:
    """Write the stage reference (``docs/stages.md``) from the stage registry; ``--check`` only
    compares it with what would be written."""
    from .plan.reference import REFERENCE_FILE, stage_reference
    from .runfolder import atomic_write_text

    text, out = stage_reference(), Path(args.out) if args.out else REFERENCE_FILE
    if args.check:
        if not out.is_file() or out.read_text() != text:
            print(f"{out} is stale: run `python -m recipes docs` and commit the result", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recipes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="List the catalog: name and one line each.").set_defaults(fn=_cmd_list)

    check = sub.add_parser(
        "check",
        help="Validate recipes and their plans without running anything, against the dataset's schema and the "
        "models' config.json (the Hub must be reachable for Hub ids).",
    )
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
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="Processes for a search-distill stage: this one and N-1 local workers, each with its share of the "
        "cores (default 1).",
    )
    run.set_defaults(fn=_cmd_run)

    worker = sub.add_parser(
        "worker",
        help="Join a stage (search-distill) that a run of NAME runs, from another process or machine.",
        description="Plan NAME with the same --set items as the main run, join the stage's Optuna study and run "
        "trials until it has n_trials. The main run (python -m recipes run NAME) collects the result.",
    )
    worker.add_argument("name", help="The recipe the main run runs (name or .yaml path).")
    worker.add_argument("--stage", required=True, help="The stage to work on, e.g. search.")
    worker.add_argument("--recipe", help="The recipe of the plan that has the stage (default: NAME).")
    worker.add_argument("--threads", type=int, help="Torch threads for this process (default: all cores).")
    worker.add_argument(
        "--wait-s", type=float, default=300.0, help="Seconds to wait for the main run to open the study (300)."
    )
    worker.set_defaults(fn=_cmd_worker)
    for p in (check, run, worker):
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="Override a field, e.g. distill.alpha=0.3, dataset.id=./my-data, models.teacher=org/clf. "
            "dataset.*, models.* and seed apply to every recipe of the plan.",
        )

    bench = sub.add_parser(
        "bench",
        help="Run every catalog recipe not yet finished, then measure all their models, the teacher, a floor and "
        "a peer in one process, in interleaved rounds; write outputs/bench/ (results.json, table.md, plot).",
    )
    bench.add_argument("--recipes", action="append", default=[], metavar="A,B", help="Only these (and the teacher).")
    bench.add_argument("--catalog", metavar="DIR", help="Recipe files to run instead of the catalog (edited budgets).")
    bench.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="A plan-wide override (dataset.*, models.*, seed), applied to every recipe.",
    )
    bench.add_argument("--bench-dir", help="Where the results go (default: OUTPUT_DIR/bench).")
    bench.add_argument("--rounds", type=int, default=5, help="Interleaved rounds (5).")
    bench.add_argument("--runs", type=int, default=100, help="Timed seed-query calls per model per round (100).")
    bench.add_argument("--warmup", type=int, default=10, help="Untimed calls before each model's turn (10).")
    bench.add_argument("--sample", type=int, default=200, help="Real test queries per round, batch 1 (200).")
    bench.add_argument("--batch-size", type=int, default=32, help="Throughput batch over the test split (32).")
    bench.add_argument(
        "--threads", type=int, help="Threads for every model (default: the cores this process may use)."
    )
    bench.add_argument(
        "--alone-repeats",
        type=int,
        default=3,
        metavar="N",
        help="Fresh processes per model: latency alone, load time, peak RSS (3; 0 skips them).",
    )
    bench.add_argument("--no-peer", action="store_true", help="Skip the model2vec peer.")
    bench.add_argument("--no-run", action="store_true", help="Run nothing: measure the finished runs only.")
    bench.add_argument(
        "--readme",
        action="store_true",
        help="Measure nothing: write README's bench section from BENCH_DIR/results.json.",
    )
    bench.add_argument("--readme-file", default="README.md", help="The README to write (README.md).")
    bench.set_defaults(fn=_cmd_bench)

    runs = sub.add_parser("runs", help="List the run folders: scope, recipe, status, dataset.")
    runs.set_defaults(fn=_cmd_runs)
    cache = sub.add_parser(
        "cache",
        help="List the run cache (earlier results of each stage, kept by key); --prune removes all but the newest.",
    )
    cache.add_argument("--prune", action="store_true", help="Remove all but the --keep newest results of each stage.")
    cache.add_argument("--keep", type=_at_least_zero, default=1, metavar="N", help="With --prune: results kept (1).")
    cache.set_defaults(fn=_cmd_cache)
    docs = sub.add_parser("docs", help="Write the stage reference (docs/stages.md) from the stage specs.")
    docs.add_argument("--check", action="store_true", help="Write nothing; exit 1 if the file is stale.")
    docs.add_argument("--out", metavar="PATH", help="The file to write or check (default: docs/stages.md).")
    docs.set_defaults(fn=_cmd_docs)
    for p in (run, runs, cache, worker, bench):
        p.add_argument("--output-dir", default="outputs", help="Root of the run folders (default: outputs).")
    return parser


def _at_least_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises :class:`KeyboardInterrupt`, so that all the cleanup
    an interrupted run does (temporary folders, a search's running trial) is done for it too."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_interrupts():
    """While a command runs stages, SIGTERM (``kill``, a scheduler, torchrun stopping its ranks)
    stops it as Ctrl-C does; the previous handler is back afterwards."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .engine import distributed

    # Under torchrun / accelerate launch only rank 0 logs progress; the others warnings and errors.
    level = logging.INFO if distributed.is_main() else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    runs_stages = args.command in ("run", "bench", "worker")
    try:
        with _sigterm_interrupts() if runs_stages else contextlib.nullcontext():
            if runs_stages:  # a worker's log is a file: no bars there
                from .engine.progress import configure_progress

                configure_progress()
            return args.fn(args)
    except RecipeError as err:
        if not getattr(err, "quiet", False):  # a rank stopped by another's failure, shown there
            print(f"error: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print("interrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
        return 128 + int(signal.SIGTERM if isinstance(err, _Terminated) else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
