"""``python -m hubtools verify REPO_ID``: check a published repo's numbers against its files.

Asks the Hub which commit the repo's ``revision`` (default ``main``) is now (``model_info``, with
timeouts) and pulls exactly that commit as a user would (``snapshot_download(revision=sha)``).
When the Hub cannot be reached, or does not answer in time, even after the retries
(:class:`hubtools.hubhttp.HubPolicy`), verify judges nothing: it raises
:class:`~hubtools.errors.HubUnreachableError` (exit status 6), never a verdict from a cached
copy of the repo. Then, for every benchmark row whose
model is in the repo (``layout.json``) re-measures accuracy on the same test rows (dataset,
config, split, ``max_samples`` and seed from the pushed ``benchmark.json`` / ``run.json``)
and latency on this machine, with the benchmark's own code (:func:`recipes.measure_models`).

Accuracy and size must match exactly: in ``benchmark.json``, in the card's table and, for the
published model, in the card's ``model-index``. Every other cell of the card's table must
equal ``benchmark.json`` too. Latency is machine-dependent, so it is shown side by side and as
a speed-up against the baseline measured in the same run; when the baseline's files are not
in the repo, absolute numbers are shown instead. Exit status 5 on any mismatch.

Speed-ups are re-measured, not only latencies: the baseline row's model (from this repo, or
else from the repo the card's ``base_model`` names, when that repo publishes the very same
model: its stage outputs hash to the fingerprint this run recorded) and every model of the repo
are loaded in one process and timed in interleaved rounds (:func:`recipes.measure_models`),
and each speed-up is compared with the card's, within :data:`SPEEDUP_TOLERANCE` (relative). A
card's numbers come from one CPU (``benchmark.json``'s ``machine``, the card's machine table);
the report says when this machine has another, where speed-ups may differ by far more than the
tolerance (a factor of about 3 between an AMD EPYC and an Intel Xeon). A speed-up out of
tolerance is a warning, or with ``strict_speedup`` (``--strict-speedup``) on the card's CPU a
mismatch.

Python (:func:`verify_repo`, also ``hubtools.verify_repo``)::

    import hubtools

    report = hubtools.verify_repo("local/all-MiniLM-L6-v2-clinc_oos-plus-kd-quant")
    report.passed, report.problems       # True, []
    report.speedups                      # [SpeedupCheck(name="quantize", card=4.5, here=4.3, ...)]
    print(report.summary())              # the card's numbers beside the ones measured here
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hubtools.card import (
    EVAL_METRICS,
    PLOT_FILE,
    benchmark_columns,
    fmt_accuracy,
    fmt_ms,
    fmt_size,
    markdown_table,
    parse_benchmark_table,
)
from hubtools.errors import HubToolsError, HubUnreachableError, VerificationFailedError
from hubtools.evalresults import read_eval_results, task_id
from hubtools.hubhttp import ENV_HELP, HubPolicy, describe, is_transient
from hubtools.runinfo import LAYOUT_FILE, RowPlace, benchmark_entry, read_layout, resolved_stage
from recipes import machine_info, measure_models
from recipes.errors import RunFolderError
from recipes.runfolder import (
    BENCHMARK_FILE,
    RESOLVED_RECIPE_FILE,
    RUN_FILE,
    BenchmarkResult,
    RunRecord,
    write_format,
)

log = logging.getLogger("hubtools.verify")
#: How far (relative) a speed-up measured here may be from the card's, on the card's CPU.
SPEEDUP_TOLERANCE = 0.30
#: Interleaved rounds of the speed-up measurement.
SPEEDUP_ROUNDS = 5
#: Files of the repo root that are about the run, not the model.
NOT_MODEL_FILES = {
    "README.md",
    RUN_FILE,
    RESOLVED_RECIPE_FILE,
    BENCHMARK_FILE,
    LAYOUT_FILE,
    PLOT_FILE,
    ".gitattributes",
}


@dataclass
class RowCheck:
    name: str
    place: RowPlace
    card: dict  # the card's table cells
    json_row: dict  # benchmark.json's row
    measured: dict | None = None  # measure()'s row; None when the files are not in the repo
    speedup: float | None = None  # measured, against the baseline measured here


@dataclass
class SpeedupCheck:
    """A row's speed-up against the baseline: the card's, and the one measured here with both
    models in one process, interleaved."""

    name: str
    card: float
    here: float
    tolerance: float = SPEEDUP_TOLERANCE

    @property
    def ratio(self) -> float:
        return self.here / self.card

    @property
    def within(self) -> bool:
        return abs(self.ratio - 1.0) <= self.tolerance


@dataclass
class VerifyReport:
    """What :func:`verify_repo` found: one :class:`RowCheck` per benchmark row, and every mismatch."""

    repo_id: str
    baseline: str
    baseline_measured: bool  # False: the baseline's files are not in the repo, latencies are absolute
    rows: list[RowCheck]
    problems: list[str] = field(default_factory=list)
    speedups: list[SpeedupCheck] = field(default_factory=list)  # re-measured here, interleaved
    baseline_source: str | None = None  # the repo the baseline was measured from; None: not measured
    speedup_note: str = ""  # why speed-ups were not re-measured
    card_cpu: str = "?"  # the CPU the card's numbers come from
    here_cpu: str = "?"
    warnings: list[str] = field(default_factory=list)

    @property
    def same_cpu(self) -> bool:
        return self.card_cpu == self.here_cpu

    @property
    def passed(self) -> bool:
        """Every number the card states matches what the repo's files measure."""
        return not self.problems

    def table(self) -> str:
        header = [
            "Model",
            "File",
            "Accuracy (card)",
            "Accuracy (here)",
            "Size MB (card)",
            "Size MB (here)",
            "Latency ms (card)",
            "Latency ms (here)",
            "Speed-up (card)",
            "Speed-up (here)",
        ]
        lines = []
        for r in self.rows:
            m = r.measured
            lines.append(
                [
                    r.name,
                    r.place.shown,
                    r.card.get("Accuracy", "?"),
                    fmt_accuracy(m["accuracy"]) if m else "-",
                    r.card.get("Size (MB)", "?"),
                    fmt_size(m["size_mb"]) if m else "-",
                    r.card.get("Latency mean ± std (ms)", "?"),
                    f"{fmt_ms(m['latency_ms']['mean'])} ± {fmt_ms(m['latency_ms']['std'])}" if m else "-",
                    r.card.get("Speed-up", "?"),
                    f"{r.speedup:.2f}x" if r.speedup is not None else "-",
                ]
            )
        return markdown_table(header, lines)

    def speedup_table(self) -> str:
        header = ["Model", "Speed-up (card)", "Speed-up (here, interleaved)", "Here / card", "Within tolerance"]
        lines = [
            [c.name, f"{c.card:.2f}x", f"{c.here:.2f}x", f"{c.ratio:.2f}", "yes" if c.within else "no"]
            for c in self.speedups
        ]
        return markdown_table(header, lines)

    def cpu_note(self) -> str:
        if self.same_cpu:
            return f"The card's numbers and these come from the same CPU: {self.here_cpu}."
        return (
            f"The card's numbers come from {self.card_cpu}; this machine has {self.here_cpu}: another CPU, "
            "where latencies and speed-ups may differ by more than the tolerance."
        )

    def summary(self) -> str:
        note = ""
        if not self.baseline_measured and self.baseline_source:
            note = f"\nThe baseline {self.baseline!r} is not in the repo: it was measured from {self.baseline_source}."
        elif not self.baseline_measured:
            note = f"\nThe baseline {self.baseline!r} is not in the repo: latencies here are absolute, not speed-ups."
        if self.speedups:
            note += (
                f"\n\nSpeed-ups against {self.baseline!r} (measured from {self.baseline_source}), every model in one "
                f"process, {SPEEDUP_ROUNDS} interleaved rounds; tolerance ±{self.speedups[0].tolerance:.0%} "
                f"relative:\n\n{self.speedup_table()}"
            )
        elif self.speedup_note:
            note += f"\nSpeed-ups not re-measured: {self.speedup_note}."
        note += f"\n{self.cpu_note()}"
        if self.warnings:
            note += "\nNOTE:\n- " + "\n- ".join(self.warnings)
        verdict = (
            "OK: every number the card states matches."
            if self.passed
            else "MISMATCH:\n- " + "\n- ".join(self.problems)
        )
        return f"{self.table()}{note}\n{verdict}"

    def _repr_markdown_(self) -> str:  # Jupyter shows the table
        return self.summary()


def _view(snapshot: Path, root_files: list[str], place: RowPlace, out: Path) -> Path:
    """A folder :func:`recipes.ml.modelio.load_classifier` reads: the repo root's config and
    tokenizer, the row's weight files, and a ``model_format.json``."""
    out.mkdir(parents=True)
    skip = NOT_MODEL_FILES | set(root_files)
    for item in snapshot.iterdir():
        if item.is_file() and item.name not in skip:
            (out / item.name).symlink_to(item.resolve())
    names = []
    for rel in place.files:
        name = Path(rel).name
        (out / name).symlink_to((snapshot / rel).resolve())
        names.append(name)
    write_format(out, place.format, names, **place.format_extra)
    return out


def compare_card(checks: list[RowCheck], card_rows: dict[str, dict], json_rows: list[dict]) -> list[str]:
    """Cells of the card's table that differ from ``benchmark.json`` formatted the same way."""
    problems = []
    names = [r["name"] for r in json_rows]
    if list(card_rows) != names:
        problems.append(f"the card's table lists {list(card_rows)}, benchmark.json {names}")
    for check in checks:
        for header, fmt in benchmark_columns(json_rows)[1:]:
            expected = fmt(check.json_row, check.place)
            if check.card.get(header) != expected:
                problems.append(
                    f"{check.name}: card says {header} {check.card.get(header)!r}, benchmark.json says {expected!r}"
                )
    return problems


#: The metrics re-measured and held against the card: benchmark.json field, the card's column.
CHECKED_METRICS = (
    ("accuracy", "Accuracy"),
    ("in_scope_accuracy", "In-scope accuracy"),
    ("oos_recall", "OOS recall"),
    ("oos_auroc", "OOS AUROC"),
)


def compare_measured(check: RowCheck) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` of a re-measured row against ``benchmark.json`` and the card. A metric
    must equal the card's; one that differs but lies within the card's stated 95% interval is a
    note (another CPU can flip a few int8 predictions), one outside it a problem. Size must match."""
    m, j, name = check.measured, check.json_row, check.name
    problems, notes = [], []
    if m["n_test"] != j["n_test"]:
        problems.append(f"{name}: measured on {m['n_test']} rows, benchmark.json on {j['n_test']}")
    for metric, column in CHECKED_METRICS:
        if metric not in j:
            continue
        here, stated = m.get(metric), j[metric]
        if here is None:
            problems.append(f"{name}: {metric} stated {stated!r}, not measured here")
            continue
        if column in check.card and fmt_accuracy(stated) != check.card[column]:
            problems.append(
                f"{name}: the card says {column} {check.card[column]}, benchmark.json {fmt_accuracy(stated)}"
            )
        if here == stated:
            continue
        low, high = (j.get("intervals") or {}).get(metric) or (stated, stated)
        where = f"{name}: {metric} here {here:.4f}, stated {stated:.4f}"
        if low <= here <= high:
            notes.append(f"{where}: within the stated 95% interval [{low:.4f}, {high:.4f}]")
        else:
            problems.append(f"{where}: outside the stated 95% interval [{low:.4f}, {high:.4f}]")
    if fmt_size(m["size_mb"]) != check.card.get("Size (MB)") or abs(m["size_mb"] - j["size_mb"]) > 1e-9:
        problems.append(f"{name}: size here {m['size_mb']:.6f} MB, benchmark.json {j['size_mb']:.6f} MB")
    return problems, notes


def compare_published(card, snapshot: Path, row: dict) -> list[str]:
    """The published model's row against the card's model-index (one result per metric) and the
    repo's ``.eval_results/`` files: every stated number equal to ``benchmark.json``'s."""
    problems = []
    results = card.data.eval_results or []
    stated = {r.metric_type: r.metric_value for r in results}
    config = results[0].dataset_config if results else None
    files = {entry["dataset"].get("task_id", ""): entry["value"] for entry in read_eval_results(snapshot).values()}
    for metric, metric_type, _ in EVAL_METRICS:
        if metric not in row:
            continue
        value = row[metric]
        if stated.get(metric_type) != value:
            problems.append(f"model-index states {metric_type} {stated.get(metric_type)!r}, benchmark.json {value!r}")
        if files.get(task_id(config, metric_type)) != value:
            in_file = files.get(task_id(config, metric_type))
            problems.append(f".eval_results states {metric_type} {in_file!r}, benchmark.json {value!r}")
    return problems


def _stage_fingerprint(record: RunRecord, stage: str) -> str | None:
    """What the runner records for a model made by ``stage`` of ``record``: ``stage:<hash of its outputs>``."""
    entry = next((e for e in record.stage_entries() if e.name == stage), None)
    if entry is None:
        return None
    return "stage:" + hashlib.sha256(json.dumps(entry.outputs, sort_keys=True).encode()).hexdigest()


def _unreachable(endpoint: str, reason: str) -> HubUnreachableError:
    return HubUnreachableError(
        f"could not reach the Hub at {endpoint}: {reason}; nothing was verified. Check that it is up "
        "(local: `make hub`) and HF_ENDPOINT is right, then verify again."
    )


def pull_current(api: HfApi, repo_id: str, revision: str | None, policy: HubPolicy) -> Path:
    """``repo_id`` as the Hub serves it now: the commit ``revision`` (default ``main``) names there,
    asked with timeouts, downloaded at exactly that commit. Raises
    :class:`~hubtools.errors.HubUnreachableError` when the Hub cannot be reached or does not answer
    in time (after the retries), so no verdict ever comes from another commit's cached copy."""
    try:
        info = policy.call(f"model_info {repo_id}", api.model_info, repo_id, revision=revision, timeout=policy.timeout)
        folder = Path(
            policy.call(
                f"download of {repo_id}@{info.sha}",
                snapshot_download,
                repo_id,
                revision=info.sha,
                endpoint=api.endpoint,
                token=api.token,
                etag_timeout=policy.read_timeout,
            )
        )
    except OfflineModeIsEnabled:
        raise _unreachable(api.endpoint, "offline mode is on (HF_HUB_OFFLINE)") from None
    except Exception as err:  # transient ones mean "unreachable"; anything else is raised as is
        if is_transient(err):
            raise _unreachable(api.endpoint, f"{describe(err)} after {policy.tries} tries") from None
        raise
    # snapshot_download returns a cached folder of that commit when the Hub stops answering midway.
    missing = sorted(s.rfilename for s in info.siblings or [] if not (folder / s.rfilename).is_file())
    if missing:
        raise _unreachable(api.endpoint, f"the download of {repo_id}@{info.sha} stopped before {missing[0]}")
    return folder


def pull_baseline(
    api: HfApi, base_repo: str | None, run: RunRecord, baseline: str, out: Path, policy: HubPolicy
) -> tuple[Path | None, str]:
    """The baseline row's model from ``base_repo`` (the card's ``base_model``) as a folder
    :func:`recipes.ml.modelio.load_classifier` reads, when that repo publishes the very model this run
    took as ``baseline``. Returns ``(folder, base_repo)``, or ``(None, why not)``; raises
    :class:`~hubtools.errors.HubUnreachableError` when the Hub does not answer."""
    wanted = (run.models.get(baseline) or {}).get("fingerprint")
    if not base_repo:
        return None, "the card names no base_model"
    if not wanted:
        return None, f"the baseline {baseline!r} is a model of this run, and its files are not in the repo"
    try:
        snapshot = pull_current(api, base_repo, None, policy)
        base_run = RunRecord.read(snapshot)
        root_files, places = read_layout((snapshot / LAYOUT_FILE).read_text())
    except HfHubHTTPError:  # not found, gated, private: a refusal, not an outage
        return None, f"its base_model {base_repo!r} cannot be downloaded"
    except (RunFolderError, OSError, ValueError, KeyError):
        return None, f"its base_model {base_repo!r} was not published by hubtools push"
    if _stage_fingerprint(base_run, base_run.final_model) != wanted:
        return None, f"its base_model {base_repo!r} publishes another model than the baseline {baseline!r}"
    place = places.get(base_run.final_model)
    if place is None or not place.in_repo:
        return None, f"its base_model {base_repo!r} does not hold the files of {base_run.final_model!r}"
    return _view(snapshot, root_files, place, out), base_repo


def measure_speedups(
    baseline: str,
    folders: dict[str, Path],
    checks: list[RowCheck],
    dataset: dict,
    timing: dict,
    threads: int,
    rounds: int = SPEEDUP_ROUNDS,
    tolerance: float = SPEEDUP_TOLERANCE,
) -> list[SpeedupCheck]:
    """Load the baseline and every row of ``folders`` in this process and time them in interleaved
    rounds; each row's speed-up here against its card's (``benchmark.json``'s ``vs_baseline``)."""
    per_round = {**timing, "runs": max(1, timing.get("runs", 100) // rounds)}
    rows = measure_models(folders, dataset, accuracy=False, rounds=rounds, threads=threads, **per_round)
    mean = {row["name"]: row["latency_ms"]["mean"] for row in rows}
    return [
        SpeedupCheck(c.name, c.json_row["vs_baseline"]["speedup"], mean[baseline] / mean[c.name], tolerance)
        for c in checks
        if c.name in folders and c.name != baseline and c.json_row.get("vs_baseline")
    ]


def _records(repo_id: str, snapshot: Path) -> tuple[RunRecord, BenchmarkResult]:
    try:
        return RunRecord.read(snapshot), BenchmarkResult.from_file(snapshot / BENCHMARK_FILE)
    except RunFolderError as err:
        raise RunFolderError(f"{repo_id}: its records cannot be read by this version: {err.message}") from None


def verify_repo(
    repo_id: str,
    revision: str | None = None,
    threads: int | None = None,
    runs: int | None = None,
    tolerance: float = SPEEDUP_TOLERANCE,
    strict_speedup: bool = False,
    *,
    endpoint: str | None = None,
    policy: HubPolicy | None = None,
) -> VerifyReport:
    """Download ``repo_id`` (the commit ``revision`` names on the Hub now) and re-measure every
    model in it on the benchmark's test rows; compare with the card and ``benchmark.json``.
    ``threads``: default the benchmark's, at most this machine's cores; ``runs``: timed latency
    calls per model (default the benchmark's). Speed-ups are re-measured against the baseline
    (this repo's, or the card's ``base_model`` repo's) in interleaved rounds and compared with the
    card's within ``tolerance`` (relative): out of it, a warning, or with ``strict_speedup`` on
    the card's CPU a mismatch. ``endpoint``: the Hub (default ``HF_ENDPOINT``); ``policy``:
    timeouts and retries (default :meth:`HubPolicy.from_env`).

    A mismatch is in the report (``passed`` False), not raised; a repo that cannot be read raises
    :class:`~hubtools.errors.HubToolsError` or :class:`~recipes.errors.RecipeError`; a Hub that
    cannot be reached or does not answer in time, :class:`~hubtools.errors.HubUnreachableError`."""
    api = HfApi(endpoint=endpoint)
    policy = policy or HubPolicy.from_env()
    with policy.session():
        return _verify(api, repo_id, revision, threads, runs, tolerance, strict_speedup, policy)


def _verify(
    api: HfApi,
    repo_id: str,
    revision: str | None,
    threads: int | None,
    runs: int | None,
    tolerance: float,
    strict_speedup: bool,
    policy: HubPolicy,
) -> VerifyReport:
    try:
        snapshot = pull_current(api, repo_id, revision, policy)
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise HubToolsError(
            f"Cannot download {repo_id!r}: {err.__class__.__name__}. Check the repo id "
            "(and HF_TOKEN for a private repo)."
        ) from None
    missing = [n for n in ("README.md", BENCHMARK_FILE, RUN_FILE, LAYOUT_FILE) if not (snapshot / n).is_file()]
    if missing:
        raise VerificationFailedError(f"{repo_id} has no {', '.join(missing)}: it was not published by hubtools push.")
    run, bench = _records(repo_id, snapshot)
    root_files, places = read_layout((snapshot / LAYOUT_FILE).read_text())
    card = ModelCard.load(snapshot / "README.md")
    try:
        card_rows = parse_benchmark_table(card.text)
    except ValueError:
        raise VerificationFailedError(f"{repo_id}: the card has no benchmark table.") from None

    spec = resolved_stage(run, benchmark_entry(run, Path(repo_id)).name)
    timing = {k: spec[k] for k in ("query", "warmup", "runs", "batch_size") if spec.get(k) is not None}
    if runs is not None:
        timing["runs"] = runs
    threads = threads or min(bench.machine.get("threads") or 1, os.cpu_count() or 1)

    checks = [
        RowCheck(r["name"], places.get(r["name"], RowPlace(r["format"])), card_rows.get(r["name"], {}), r)
        for r in bench.models
    ]
    problems, notes = compare_card(checks, card_rows, bench.models), []
    report_extra: dict = {"card_cpu": bench.machine.get("cpu") or "?", "here_cpu": machine_info()["cpu"]}
    with tempfile.TemporaryDirectory(prefix="hubtools-verify-") as tmp:
        folders = {
            check.name: _view(snapshot, root_files, check.place, Path(tmp) / check.name)
            for check in checks
            if check.place.in_repo
        }
        if folders:
            measured = measure_models(folders, bench.dataset, seed=run.seed, threads=threads, **timing)
            by_name = {row["name"]: row for row in measured}
            for check in checks:
                if check.name in by_name:
                    check.measured = by_name[check.name]
                    found, noted = compare_measured(check)
                    problems += found
                    notes += noted
        source = repo_id
        if bench.baseline not in folders:
            pulled, source = pull_baseline(
                api, card.data.base_model, run, bench.baseline, Path(tmp) / ".baseline", policy
            )
            if pulled is not None:
                folders[bench.baseline] = pulled
        if bench.baseline not in folders:
            report_extra["speedup_note"] = source
        elif len(folders) < 2:
            report_extra["speedup_note"] = "the repo holds no model besides the baseline"
        else:
            log.info("Speed-ups against %s (from %s), interleaved", bench.baseline, source)
            speedups = measure_speedups(
                bench.baseline, folders, checks, bench.dataset, timing, threads, tolerance=tolerance
            )
            report_extra.update(speedups=speedups, baseline_source=source)
    base = next((c for c in checks if c.name == bench.baseline and c.measured), None)
    for check in checks:
        if base and check.measured:
            check.speedup = base.measured["latency_ms"]["mean"] / check.measured["latency_ms"]["mean"]
    final = next((c for c in checks if c.name == run.final_model), None)
    if final is None or final.measured is None:
        problems.append(f"the published model {run.final_model!r} has no files in the repo to measure")
    else:
        problems += compare_published(card, snapshot, final.json_row)
    report = VerifyReport(repo_id, bench.baseline, base is not None, checks, problems, **report_extra)
    report.warnings += notes
    for c in report.speedups:
        if not c.within:
            message = (
                f"{c.name}: speed-up here {c.here:.2f}x, card {c.card:.2f}x: {c.ratio:.2f} times the card's, "
                f"outside ±{c.tolerance:.0%}" + ("" if report.same_cpu else " (on another CPU than the card's)")
            )
            (report.problems if strict_speedup and report.same_cpu else report.warnings).append(message)
    return report


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "verify", help="re-measure a published repo and compare with its card", description=__doc__.splitlines()[0]
    )
    parser.add_argument("repo_id")
    parser.add_argument("--revision", help="branch or commit (default: main)")
    parser.add_argument(
        "--threads", type=int, help="default: the benchmark's thread count, at most this machine's cores"
    )
    parser.add_argument("--runs", type=int, help="timed latency calls per model (default: the benchmark's)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=SPEEDUP_TOLERANCE,
        help=f"how far (relative) a speed-up here may be from the card's (default {SPEEDUP_TOLERANCE})",
    )
    parser.add_argument(
        "--strict-speedup",
        action="store_true",
        help="a speed-up out of tolerance on the card's CPU fails verify (default: a warning)",
    )
    parser.epilog = ENV_HELP
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    report = verify_repo(args.repo_id, args.revision, args.threads, args.runs, args.tolerance, args.strict_speedup)
    print(report.summary())
    if not report.passed:
        raise VerificationFailedError(f"{args.repo_id}: {len(report.problems)} number(s) do not match; see above.")
    return 0
