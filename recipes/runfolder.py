"""The run folder: its file names and its typed records, written and read only through here.

Layout (``<output root>/<scope>/<recipe>/``; the scope names the dataset, base model and seed
that every recipe of one plan shares, see :mod:`recipes.plan.planning`)::

    recipe.yaml        the resolved recipe (overrides applied)
    run.json           :class:`RunRecord`
    run.log            the log of every run
    .lock              held (flock) by the run that writes the folder; names its pid and host
    <stage>/           the stage's files + .stage.json (:class:`StageRecord`)
    <stage>/model_format.json   :class:`ModelFormat`, in every folder that holds a model
    <stage>/benchmark.json      :class:`BenchmarkResult`, for benchmark stages
    <stage>/study/trials.json   :class:`TrialsRecord` (+ plots, study.db), for search stages
    .state/<stage>-<key[:12]>/  work an interrupted stage resumes (:meth:`RunFolder.state_dir`)
    .cache/<stage>/<key[:16]>/  earlier results of the stage, by cache key (:meth:`RunFolder.cached`)

``make bench`` writes ``<output root>/bench/results.json`` (:class:`BenchRecord`).

Every record carries ``schema_version``. A record of an older version is a cache miss (the
stage reruns and says why); a record of a newer version, or one that is not a record at all,
is a :class:`~recipes.errors.RunFolderError` naming the file, never a ``KeyError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from .errors import RunFolderBusyError, RunFolderError

SCHEMA_VERSION = 3
STAGE_RECORD = ".stage.json"
RUN_FILE = "run.json"
RESOLVED_RECIPE_FILE = "recipe.yaml"
RUN_LOG = "run.log"
LOCK_FILE = ".lock"
BENCHMARK_FILE = "benchmark.json"
SCOPE_FILE = "scope.json"
#: A search stage's study, in its folder and in the published repo.
STUDY_DIR = "study"
TRIALS_FILE = "trials.json"
STUDY_DB = "study.db"
#: ``make bench``'s results, in its folder (``<output root>/bench``).
BENCH_DIR = "bench"
BENCH_RESULTS_FILE = "results.json"
#: Work a stage resumes after an interruption, and the cache key it belongs to.
STATE_DIR = ".state"
STATE_KEY_FILE = "key.json"
#: Earlier results of a stage, kept by cache key so that going back to earlier settings reuses them.
CACHE_DIR = ".cache"
#: Earlier results the run cache keeps per stage (``python -m recipes cache --keep N`` prunes to N).
CACHE_KEEP = 3


# --- files -----------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``. A write that fails
    (a full disk) leaves ``path`` as it was and no part of the new text behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def output_files(folder: Path) -> list[str]:
    """Every file under ``folder`` (records excluded), as relative POSIX paths."""
    return [
        p.relative_to(folder).as_posix()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and p.name != STAGE_RECORD
    ]


def hash_outputs(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (records excluded), by relative POSIX path."""
    return {name: sha256_file(Path(folder) / name) for name in output_files(folder)}


def changed_outputs(folder: Path, recorded: dict[str, str]) -> list[str]:
    """Why ``folder``'s files no longer match ``recorded`` (empty: they all do).

    The folder is the truth and the record only a claim about it: a file the record does not
    list is a change, as is a record that lists no files (every stage writes some), so a record
    edited or cut short never makes a stage look finished."""
    if not isinstance(recorded, dict) or not recorded:
        return ["its record lists no files"]
    problems = [f"{name} is not in its record" for name in output_files(folder) if name not in recorded]
    for name, digest in sorted(recorded.items()):
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} changed since the stage finished")
    return problems


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Turn an ``OSError`` raised while creating or writing the run folder ``folder`` (read-only,
    not a folder, no permission, a full disk) into one :class:`RunFolderError` that names it and
    the fix, in place of a traceback."""
    try:
        yield
    except OSError as err:
        raise RunFolderError(_cannot_write(Path(folder), err)) from None


def _cannot_write(folder: Path, err: OSError) -> str:
    blocker = next((p for p in (folder, *folder.parents) if os.path.exists(p) and not os.path.isdir(p)), None)
    if blocker is not None:
        why = f"{blocker} is a file, not a folder"
    else:
        why = err.strerror or str(err)
        if err.filename and Path(err.filename) != folder:
            why += f": {err.filename}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "Free space on its disk, or choose another --output-dir."
    else:
        fix = "Choose a writable --output-dir, or fix the permissions of the folder."
    return f"Cannot write the run folder {folder} ({why}). {fix}"


# --- model folders ---------------------------------------------------------------------------------

#: In every model folder a stage makes: its format and the weight files that are its size.
FORMAT_FILE = "model_format.json"
#: The format of a plain ``save_pretrained`` folder (a Hub snapshot, a ``models:`` entry).
PYTORCH = "pytorch"


@dataclass
class ModelFormat:
    """``model_format.json``: how a model folder is loaded (``format``) and what its size is."""

    format: str
    weights: list[str]  # files (relative to the folder) whose bytes are the model's size
    extra: dict = field(default_factory=dict)


def write_format(model_dir: Path, format: str, weights: list[str], **extra: Any) -> None:
    write_json(Path(model_dir) / FORMAT_FILE, {"format": format, "weights": weights, **extra})


def read_format(model_dir: Path) -> ModelFormat:
    """The folder's format; a plain ``save_pretrained`` folder (e.g. a Hub snapshot) is PyTorch."""
    path = Path(model_dir) / FORMAT_FILE
    if path.exists():
        data = json.loads(path.read_text())
        return ModelFormat(data.pop("format"), data.pop("weights"), data)
    weights = [p.name for p in Path(model_dir).glob("*.safetensors")] or [
        p.name for p in Path(model_dir).glob("pytorch_model*.bin")
    ]
    return ModelFormat(PYTORCH, sorted(weights))


# --- records -----------------------------------------------------------------------------------


def _from_dict(cls, data: Any, path: Path):
    """``cls(**data)`` for a record of this schema version; a clear error for anything else."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise RunFolderError(f"{path}: not a {cls.__name__} (no schema_version); it was not written by this tool.")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise RunFolderError(
            f"{path}: {cls.__name__} of schema version {version!r}; this version reads {SCHEMA_VERSION}. "
            + ("Upgrade the project to read it." if newer else "Rerun the recipe to rewrite it.")
        )
    names = {f.name for f in dataclasses.fields(cls)}
    missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in data and _required(f))
    if missing:
        raise RunFolderError(f"{path}: {cls.__name__} lacks {', '.join(missing)}; rerun the recipe to rewrite it.")
    return cls(**{k: v for k, v in data.items() if k in names})


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def read_json(path: Path, what: str) -> Any:
    if not Path(path).is_file():
        raise RunFolderError(f"{path} does not exist ({what}). Run the recipe first: python -m recipes run <name>.")
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path}: unreadable ({err}); rerun the recipe to rewrite it.") from None


class _Record:
    """A JSON record of the run folder: ``FILE`` in a folder, read back with its schema checked."""

    FILE: ClassVar[str]
    WHAT: ClassVar[str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, folder: Path) -> None:
        write_json(Path(folder) / self.FILE, self.to_dict())

    @classmethod
    def read(cls, folder: Path):
        path = Path(folder) / cls.FILE
        return _from_dict(cls, read_json(path, cls.WHAT), path)

    @classmethod
    def from_file(cls, path: Path):
        return _from_dict(cls, read_json(path, cls.WHAT), Path(path))


@dataclass
class StageRecord(_Record):
    """``<stage>/.stage.json``: what a finished stage was made from and what it wrote."""

    FILE: ClassVar[str] = STAGE_RECORD
    WHAT: ClassVar[str] = "the stage record"

    stage: str
    type: str
    fingerprint: str  # sha256 of ``key``
    key: dict  # everything that shaped the result: spec, inputs, data, seed, code, libraries
    refs: dict[str, str]  # role -> model name in the recipe
    outputs: dict[str, str]  # relative path -> sha256
    metrics: dict
    wall_s: float
    finished_at: str
    schema_version: int = SCHEMA_VERSION

    @property
    def spec(self) -> dict:
        return self.key["spec"]

    @property
    def inputs(self) -> dict[str, str]:
        return self.key["inputs"]

    @property
    def content_fingerprint(self) -> str:
        """What the stage's model is, for the stages that read it: the hash of its files."""
        return hashlib.sha256(json.dumps(self.outputs, sort_keys=True).encode()).hexdigest()


#: The Hub's ``base_model_relation`` values a stage type may declare, strongest change first:
#: a model whose line holds a fine-tune and a quantization is a fine-tune of its base.
RELATIONS = ("finetune", "merge", "adapter", "quantized")


@dataclass(frozen=True)
class Publishing:
    """What a stage type's model means on a model card and in a published Hub repo.

    Each stage module declares one when it registers (:func:`recipes.stages.base.register`); the
    runner writes it into every stage's entry of ``run.json``, where ``hubtools`` reads it, so the
    Hub side knows no stage type by name and a new stage type needs no edit there.

    ``tag``
        Card tag of a recipe that uses the type (``"quantization"``), or None.
    ``relation``
        What the type makes of its input, as the Hub's ``base_model_relation`` (one of
        :data:`RELATIONS`): ``"finetune"`` for a stage that trains weights, ``"quantized"``
        for one that only quantizes them; None for a conversion (an ONNX export).
    ``phrase``
        The card's line-of-descent text for a model it made; ``{field}`` is a field of the
        stage's spec: ``"distilled from `{input}`"``. Empty: a generic phrase.
    ``repo_dir``
        Where its model's weight files (its ``model_format.json`` ``weights``) go in the
        repo: ``""`` the root, for PyTorch fp32 that ``pipeline(model=repo_id)`` loads (its
        config and tokenizer come along); a folder (``"onnx"``); None: never published (it
        makes no model, or none a user would load).
    ``usage``
        The card partial, under ``cards/partials/``, that shows how to load its model from
        ``repo_dir`` (``"usage/onnx.md.j2"``), or None.
    ``card_section``
        The card section its stage's record fills (``"calibration"``: ``hubtools.card`` knows
        how each section reads a stage's metrics and files), or None.
    """

    tag: str | None = None
    relation: str | None = None
    phrase: str = ""
    repo_dir: str | None = None
    usage: str | None = None
    card_section: str | None = None

    def __post_init__(self):
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"relation {self.relation!r} is not a base_model_relation; allowed: {RELATIONS}")
        if self.usage is not None and self.repo_dir is None:
            raise ValueError("a usage partial needs a repo_dir: the snippet loads the model from there")
        if self.repo_dir and (self.repo_dir.startswith(("/", ".")) or "\\" in self.repo_dir):
            raise ValueError(f"repo_dir {self.repo_dir!r} must be a relative folder of the repo, e.g. 'onnx'")

    @classmethod
    def from_dict(cls, data: dict | None) -> Publishing:
        return cls(**{k: v for k, v in (data or {}).items() if k in {f.name for f in dataclasses.fields(cls)}})


#: A stage type that publishes nothing and adds nothing to the card (the benchmark).
NOT_PUBLISHED = Publishing()


@dataclass
class StageEntry:
    """One stage of a run, as ``run.json`` lists it."""

    name: str
    type: str
    status: str  # "ran" | "cached"
    fingerprint: str
    wall_s: float  # this run's time on it (0 when cached)
    run_wall_s: float  # the time it took when it ran
    refs: dict[str, str]
    inputs: dict[str, str]
    outputs: dict[str, str]
    metrics: dict
    publishing: dict = field(default_factory=dict)  # its stage type's Publishing, as a dict

    @property
    def published_as(self) -> Publishing:
        return Publishing.from_dict(self.publishing)


@dataclass
class RunRecord(_Record):
    """``run.json``: the recipe as run, where and with what, and each stage's result."""

    FILE: ClassVar[str] = RUN_FILE
    WHAT: ClassVar[str] = "the run record"

    recipe: str
    scope: str
    recipe_file: str
    recipe_sha256: str
    recipe_text: str
    overrides: list[str]
    resolved: dict  # the recipe after overrides
    seed: int
    status: str  # "finished" | "failed at <stage>"
    git_commit: str | None
    machine: dict
    wall_s: float
    final_model: str | None
    models: dict[str, dict]  # every model name -> {"path", "fingerprint"}
    stages: list[dict]  # StageEntry as dicts
    schema_version: int = SCHEMA_VERSION

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def stage_entries(self) -> list[StageEntry]:
        return [StageEntry(**s) for s in self.stages]


@dataclass
class BenchmarkResult(_Record):
    """``benchmark.json``: every measured model (rows as dicts, see the benchmark stage)."""

    FILE: ClassVar[str] = BENCHMARK_FILE
    WHAT: ClassVar[str] = "the benchmark results"

    baseline: str
    query: str
    warmup: int
    runs: int
    dataset: dict
    machine: dict
    models: list[dict]
    measured_at: str = ""  # ISO 8601, UTC
    schema_version: int = SCHEMA_VERSION


@dataclass
class TrialsRecord(_Record):
    """``study/trials.json`` of a search stage: the search at a glance, then every trial that ran."""

    FILE: ClassVar[str] = TRIALS_FILE
    WHAT: ClassVar[str] = "the search's trials"

    metric: str
    objectives: list[str]
    n_trials: int
    counts: dict[str, int]  # complete, pruned, failed
    pruner: str
    storage: str
    best: int  # the kept trial's number
    rule: str  # how it was chosen
    pareto_front: list[int]
    trials: list[dict]  # number, state, params, values, reported, epochs_trained, duration_s, worker, retry_of
    plots: dict = field(default_factory=dict)  # name -> {"file", "title"}
    schema_version: int = SCHEMA_VERSION


@dataclass
class BenchRecord(_Record):
    """``results.json`` of ``make bench``: every row measured on one machine, and the targets."""

    FILE: ClassVar[str] = BENCH_RESULTS_FILE
    WHAT: ClassVar[str] = "the bench results; run `make bench` first"

    date: str
    created: str
    machine: dict
    settings: dict
    recipes: list[str]
    overrides: list[str]
    scope: str
    dataset: dict
    reference: str | None
    floor: str | None
    peer: str | None
    rows: list[dict]
    pareto: list[str]
    targets: list[dict]
    skipped: dict[str, str]
    schema_version: int = SCHEMA_VERSION


# --- the folder --------------------------------------------------------------------------------


@dataclass
class RunFolder:
    """``<output root>/<scope>/<recipe>/`` and the operations on it."""

    path: Path
    scope: str = field(default="")

    def __post_init__(self):
        self.path = Path(self.path)

    @classmethod
    def of(cls, output_root: Path, scope: str, recipe: str) -> RunFolder:
        return cls(Path(output_root) / scope / recipe, scope)

    @property
    def recipe(self) -> str:
        return self.path.name

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def log_file(self) -> Path:
        return self.path / RUN_LOG

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILE

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def temp_dir(self, stage: str) -> Path:
        """Where ``stage`` is written before it is finished: ``.<stage>.tmp-<pid>``."""
        return self.path / f".{stage}.tmp-{os.getpid()}"

    def write_recipe(self, text: str) -> None:
        with writing(self.path):
            atomic_write_text(self.path / RESOLVED_RECIPE_FILE, text)

    def read_recipe(self) -> str:
        return (self.path / RESOLVED_RECIPE_FILE).read_text()

    def write_run(self, record: RunRecord) -> None:
        with writing(self.path):
            record.write(self.path)

    def read_run(self) -> RunRecord:
        return RunRecord.read(self.path)

    def read_stage(self, stage: str) -> StageRecord:
        return StageRecord.read(self.stage_dir(stage))

    def finish_stage(self, temp: Path, record: StageRecord, keep: int = CACHE_KEEP) -> Path:
        """Write ``record`` into ``temp`` and move it into place; an older result of the stage goes
        into the run cache under its own key (``keep``: how many the cache holds per stage)."""
        record.write(temp)
        target = self.stage_dir(record.stage)
        if target.exists():
            self._retire(record.stage, keep)
        os.replace(temp, target)
        return target

    # --- state: what an interrupted stage resumes ---------------------------------------------------

    def state_dir(self, stage: str, fingerprint: str) -> Path:
        """Where ``stage`` under this cache key keeps what a rerun resumes: ``.state/<stage>-<fp[:12]>``."""
        return self.path / STATE_DIR / f"{stage}-{fingerprint[:12]}"

    def state_dirs(self, stage: str) -> list[Path]:
        """Every state folder of ``stage``, whatever its key."""
        root = self.path / STATE_DIR
        if not root.is_dir():
            return []
        found = []
        for path in sorted(root.iterdir()):
            name, _, key = path.name.rpartition("-")
            if name == stage and len(key) == 12:
                found.append(path)
        return found

    def open_state(self, stage: str, fingerprint: str, key: dict) -> Path:
        """The state folder of ``stage`` under this key, made if missing, with the key in it."""
        state = self.state_dir(stage, fingerprint)
        state.mkdir(parents=True, exist_ok=True)
        if not (state / STATE_KEY_FILE).is_file():
            write_json(state / STATE_KEY_FILE, key)
        return state

    @staticmethod
    def state_key(state: Path) -> dict | None:
        """The cache key a state folder belongs to; None when it cannot be read."""
        try:
            return json.loads((Path(state) / STATE_KEY_FILE).read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def holds_work(state: Path) -> bool:
        """Whether a state folder holds more than its key: work a run left."""
        return any(p.name != STATE_KEY_FILE for p in Path(state).iterdir())

    def remove_state(self, stage: str) -> None:
        """Delete every state folder of ``stage`` (of this key and of older ones)."""
        for path in self.state_dirs(stage):
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.path / STATE_DIR).rmdir()  # only when empty

    # --- the run cache: earlier results by key ------------------------------------------------------

    def cache_dir(self, stage: str, fingerprint: str) -> Path:
        return self.path / CACHE_DIR / stage / fingerprint[:16]

    def cached_result(self, stage: str, fingerprint: str) -> StageRecord | None:
        """The cached result of ``stage`` under this key, if its files are intact; else None."""
        slot = self.cache_dir(stage, fingerprint)
        if not slot.is_dir():
            return None
        try:
            record = StageRecord.read(slot)
        except RunFolderError:
            return None
        if record.fingerprint != fingerprint or changed_outputs(slot, record.outputs):
            return None
        return record

    def restore_cached(self, stage: str, fingerprint: str, keep: int = CACHE_KEEP) -> StageRecord:
        """Make the cached result of this key the stage's folder again; the current one (if any)
        goes into the cache under its own key. Every move is a rename: a crash leaves either
        result whole, and the other as a temporary that the next run removes."""
        slot = self.cache_dir(stage, fingerprint)
        record = StageRecord.read(slot)
        temp = self.temp_dir(stage)
        shutil.rmtree(temp, ignore_errors=True)
        os.replace(slot, temp)
        if self.stage_dir(stage).exists():
            self._retire(stage, keep)
        os.replace(temp, self.stage_dir(stage))
        return record

    def _retire(self, stage: str, keep: int) -> None:
        """Move the stage's current result into the cache under its own key, then keep the
        ``keep`` newest there; a result whose record cannot be read is deleted."""
        old = self.path / f".{stage}.old-{os.getpid()}"
        os.replace(self.stage_dir(stage), old)
        try:
            fingerprint = StageRecord.read(old).fingerprint
        except RunFolderError:
            fingerprint = None
        if fingerprint is None or keep < 1:
            shutil.rmtree(old, ignore_errors=True)
            return
        slot = self.cache_dir(stage, fingerprint)
        shutil.rmtree(slot, ignore_errors=True)
        slot.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, slot)
        os.utime(slot)  # the newest entry is the one retired last
        self.prune_cache(stage, keep)

    def cache_entries(self, stage: str | None = None) -> list[Path]:
        """Cached results (of ``stage``, or of every stage), newest first."""
        root = self.path / CACHE_DIR
        stages = [root / stage] if stage else (sorted(root.iterdir()) if root.is_dir() else [])
        found = [slot for folder in stages if folder.is_dir() for slot in folder.iterdir() if slot.is_dir()]
        return sorted(found, key=lambda slot: slot.stat().st_mtime, reverse=True)

    def prune_cache(self, stage: str | None = None, keep: int = CACHE_KEEP) -> list[Path]:
        """Delete all but the ``keep`` newest cached results of each stage (``stage``, or every
        one); returns what was deleted."""
        removed = []
        stages = {slot.parent.name for slot in self.cache_entries(stage)}
        for name in sorted(stages):
            for slot in self.cache_entries(name)[keep:]:
                shutil.rmtree(slot, ignore_errors=True)
                removed.append(slot)
        return removed

    @contextlib.contextmanager
    def lock(
        self, wait: bool = True, on_wait: Callable[[str], None] | None = None, poll_s: float = 1.0
    ) -> Iterator[None]:
        """Hold the folder for one run. Another live run's lock makes this wait (``on_wait`` is
        told once, with the owner) or, with ``wait=False``, raise :class:`RunFolderBusyError`.

        ``flock`` is released by the kernel when its process dies, so the lock of a killed run
        is taken over at once; the pid and host in the file are for the message only.
        """
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            told = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    owner = self._lock_owner()
                    message = f"{self.path} is in use by {owner}"
                    if not wait:
                        raise RunFolderBusyError(
                            f"{message}. Wait for that run to finish, or use another --output-dir."
                        ) from None
                    if on_wait is not None and not told:
                        on_wait(f"{message}; waiting for it to finish")
                        told = True
                    time.sleep(poll_s)
            started = datetime.now(timezone.utc).isoformat(timespec="seconds")
            with writing(self.path):
                os.ftruncate(fd, 0)
                os.pwrite(
                    fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": started}).encode(), 0
                )
            yield
        finally:
            os.close(fd)  # releases the flock

    def _lock_owner(self) -> str:
        try:
            info = json.loads(self.lock_file.read_text() or "{}")
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete what interrupted runs left (``.*.tmp-<pid>``, ``.*.old-<pid>``) unless a live
        process other than this one owns it. Returns what was removed."""
        removed = []
        for stale in [*self.path.glob(".*.tmp-*"), *self.path.glob(".*.old-*")]:
            owner = stale.name.rsplit("-", 1)[-1]
            if owner.isascii() and owner.isdigit() and int(owner) != os.getpid() and pid_alive(int(owner)):
                continue
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
            removed.append(stale)
        return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_runs(output_root: Path) -> list[RunFolder]:
    """Every run folder under ``output_root`` (``<scope>/<recipe>/run.json``), sorted."""
    root = Path(output_root)
    return [RunFolder(p.parent, p.parent.parent.name) for p in sorted(root.glob(f"*/*/{RUN_FILE}"))]
