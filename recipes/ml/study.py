"""An Optuna study that survives a crash, is shared by processes and machines, and shows its work.

Optuna does the work: an RDB storage that many processes share, heartbeats that fail the
trials of a process that stopped beating, pruners, samplers and plots. This module adds what a
recipe stage needs around them (see :mod:`recipes.stages.search` for the stage):

* **Where the study lives**: SQLite in the stage's state folder (``study.db``, which outlives
  a failed or killed run) unless the recipe gives a SQLAlchemy URL (PostgreSQL for several
  machines). Its name is the stage's id, ``<recipe>.<stage>.<fingerprint>``, so every process
  with the same settings, inputs, data, code and libraries joins the same study, and any
  other joins none.
* **How many trials run**: exactly ``n_trials`` trials end COMPLETE or PRUNED, however many
  processes work. A process starts a trial only while the finished, running and queued trials
  are fewer than ``n_trials``; two that start one at the same moment are sorted out by trial
  number (the later one is *surplus*: failed at once, before it samples anything, and left out
  of every table). Optuna's ``MaxTrialsCallback`` stops a process only after its trial ends,
  so three processes would overshoot by two.
* **A trial whose process died**: FAILED and its parameters queued again
  (``RetryHeartbeatStaleTrialCallback``, at most :data:`MAX_RETRIES` times): at once for a
  process of this host whose pid is gone (``SIGKILL``, Ctrl-C), after the heartbeat's grace
  period (:data:`GRACE_S`) for one on another machine.
* **What it shows**: ``trials.json`` (every trial: number, state, parameters, value(s),
  per-epoch values, duration, where it ran), Optuna's matplotlib plots as PNGs and a copy of
  the study as ``study.db`` (``optuna-dashboard sqlite:///study.db``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..runfolder import STUDY_DB, TrialsRecord, pid_alive

#: Seconds between a running trial's heartbeats, and without one before it counts as dead.
HEARTBEAT_S = 20
GRACE_S = 60
#: How often a trial whose process died is queued again (then a fresh one replaces it).
MAX_RETRIES = 2
#: Seconds between looks at the study while other processes finish its last trials.
POLL_S = 2.0
#: The state folder's SQLite file, and what the stage output keeps of the study.
PLOTS = {
    "optimization_history": "Optimization history",
    "intermediate_values": "Eval metric after each epoch (pruned trials stop early)",
    "param_importances": "Parameter importances",
    "pareto_front": "Pareto front",
}
#: Study user attributes: why no trial may start any more (the main run finished or timed out).
CLOSED = "closed"
#: Trial user attributes.
WORKER, RESULT, SURPLUS, INTERRUPTED = "worker", "result", "surplus", "interrupted"
#: The trial attribute holding the epochs a trial trained (its reports are on the pruner's axis).
EPOCHS_TRAINED = "epochs_trained"


class SurplusTrial(Exception):
    """Raised in a trial that started when ``n_trials`` trials were already done or under way."""


def _optuna():
    import optuna

    return optuna


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs each trial at INFO and warns about its experimental features (heartbeats,
    plots); the stage logs its own lines. Restores the verbosity afterwards."""
    optuna = _optuna()
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
            yield
    finally:
        optuna.logging.set_verbosity(before)


# --- storage ----------------------------------------------------------------------------------


def check_storage_url(url: str) -> str:
    """``url`` if SQLAlchemy can parse it and it holds no password (a recipe's settings are
    recorded in run.json and published with the model)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ValueError(
            f"not a SQLAlchemy database URL ({err}); e.g. postgresql+psycopg://user@host:5432/db"
        ) from None
    if parsed.password is not None or "password" in parsed.query:
        raise ValueError(
            "the URL holds a password, which run.json and the model card would publish: leave it out "
            "and give it to the driver instead (PGPASSWORD, or a ~/.pgpass line for PostgreSQL)"
        )
    return url


def storage_url(configured: str | None, state_dir: Path) -> str:
    return configured or f"sqlite:///{Path(state_dir).resolve() / STUDY_DB}"


def shown_url(url: str) -> str:
    """The URL for logs and records: the driver and where, never a password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


#: Tries to open a storage whose schema another process may be creating at the same moment.
SCHEMA_ATTEMPTS = 5


def open_storage(url: str):
    """An ``RDBStorage`` with heartbeats: a trial whose process stops beating for :data:`GRACE_S`
    is failed by the next process that looks, and queued again."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    optuna = _optuna()
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
            )
        except (IntegrityError, ProgrammingError):
            # Processes that open a new database at once race to create Optuna's schema (PostgreSQL:
            # "duplicate key ... pg_type"); the loser finds it made by the winner on the next try.
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def find_study(storage, name: str):
    """The study called ``name`` in ``storage``, or None."""
    optuna = _optuna()
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


# --- who runs which trial -------------------------------------------------------------------------


def worker_tag() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _states(*names: str) -> tuple:
    state = _optuna().trial.TrialState
    return tuple(getattr(state, n) for n in names)


def counted(trials) -> int:
    """Trials that count toward ``n_trials``: COMPLETE and PRUNED."""
    done = _states("COMPLETE", "PRUNED")
    return sum(1 for t in trials if t.state in done)


def is_surplus(study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` must not run: the study is closed, or the trials before it that
    finished, run or wait to run already make ``n_trials``."""
    if study.user_attrs.get(CLOSED):
        return True
    live = _states("COMPLETE", "PRUNED", "RUNNING", "WAITING")
    return sum(1 for t in study.get_trials(deepcopy=False, states=live) if t.number < number) >= n_trials


def _retry(study, trial) -> None:
    optuna = _optuna()
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)


def reclaim(study, log: logging.Logger) -> list[int]:
    """Fail the trials whose process is gone and queue their parameters again; return their
    numbers. A process on this host is gone when its pid is (at once); one elsewhere when its
    heartbeat is older than :data:`GRACE_S` (Optuna's ``fail_stale_trials``). A trial that was
    interrupted (Ctrl-C) is already FAILED: it is queued again too, once."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    host = socket.gethostname()
    reclaimed = []
    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        tag = trial.user_attrs.get(WORKER) or {}
        if tag.get("host") != host or not isinstance(tag.get("pid"), int) or pid_alive(tag["pid"]):
            continue
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, state=state.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        _retry(study, study._storage.get_trial(trial._trial_id))
        reclaimed.append(trial.number)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(state.FAIL,))}
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    reclaimed += sorted({t.number for t in trials if t.state == state.FAIL} - before)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for trial in trials:
        if trial.state == state.FAIL and trial.user_attrs.get(INTERRUPTED) and trial.number not in retried:
            _retry(study, trial)
            reclaimed.append(trial.number)
    if reclaimed:
        log.info(
            "Trial(s) %s stopped with their process: marked failed, their parameters queued again",
            ", ".join(map(str, sorted(reclaimed))),
        )
    return reclaimed


def work(
    study,
    n_trials: int,
    run_one: Callable[[], None],
    log: logging.Logger,
    deadline: float | None = None,
    wait_for_others: bool = True,
) -> None:
    """Run trials one at a time (``run_one``: one ``study.optimize(..., n_trials=1)``) until
    ``n_trials`` count, then, with ``wait_for_others``, until no other process runs one.

    A trial starts only while the counted, running and queued trials are fewer than
    ``n_trials``, or to take a queued one; meanwhile the process waits, and takes over the
    trials of processes that die. Past ``deadline`` (``time.time()``) it starts none."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    told = False
    while True:
        reclaim(study, log)
        trials = study.get_trials(deepcopy=False)
        done = counted(trials)
        running = sum(1 for t in trials if t.state == state.RUNNING)
        waiting = sum(1 for t in trials if t.state == state.WAITING)
        stopped = done >= n_trials or study.user_attrs.get(CLOSED) or (deadline is not None and time.time() > deadline)
        if stopped and (not running or not wait_for_others):
            return
        if not stopped and (waiting or done + running < n_trials):
            run_one()
            told = False
            continue
        if not told:
            log.info("%d of %d trials done, %d running elsewhere: waiting for them", done, n_trials, running)
            told = True
        time.sleep(POLL_S)


# --- the best trial(s) -------------------------------------------------------------------------------


def complete(trials) -> list:
    (done,) = _states("COMPLETE")
    return [t for t in trials if t.state == done]


def best_single(trials):
    """The COMPLETE trial with the highest value (the earliest on a tie), or None."""
    return max(complete(trials), key=lambda t: (t.values[0], -t.number), default=None)


def pareto_front(trials) -> list:
    """COMPLETE trials that no other beats: maximize ``values[0]``, minimize ``values[1]``."""
    done = complete(trials)

    def dominates(a, b) -> bool:
        return a.values[0] >= b.values[0] and a.values[1] <= b.values[1] and a.values != b.values

    return sorted((t for t in done if not any(dominates(o, t) for o in done)), key=lambda t: t.number)


@dataclass(frozen=True)
class Choice:
    """The kept trial and the rule that picked it."""

    trial: object  # a FrozenTrial
    rule: str


def choose(trials, metric: str, second: str | None, within: float) -> Choice | None:
    """The trial to keep. One objective: the best. Two: among the Pareto-optimal trials, the
    one with the lowest ``second`` whose eval metric is within ``within`` of the best one."""
    if second is None:
        best = best_single(trials)
        return None if best is None else Choice(best, f"the trial with the highest eval {metric}")
    front = pareto_front(trials)
    if not front:
        return None
    top = max(t.values[0] for t in front)
    near = [t for t in front if t.values[0] >= top - within - 1e-12]
    kept = min(near, key=lambda t: (t.values[1], -t.values[0], t.number))
    if within:
        rule = (
            f"the Pareto-optimal trial with the lowest {second} whose eval {metric} is within {within:g} "
            f"of the best ({top:.4f})"
        )
    else:
        rule = f"the Pareto-optimal trial with the highest eval {metric} (the lowest {second} on a tie)"
    return Choice(kept, rule)


# --- what the stage keeps -------------------------------------------------------------------------------


def state_name(trial) -> str:
    """``complete``, ``pruned``, ``failed``, ``running`` or ``waiting``."""
    return {"FAIL": "failed"}.get(trial.state.name, trial.state.name.lower())


def _duration(trial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 2)
    return None


def trial_record(trial) -> dict:
    """One row of ``trials.json`` (and of the stage's metrics)."""
    tag = trial.user_attrs.get(WORKER) or {}
    retried = trial.system_attrs.get("failed_trial")
    return {
        "number": trial.number,
        "state": state_name(trial),
        "params": dict(trial.params),
        "values": list(trial.values) if trial.values is not None else None,
        "reported": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "epochs_trained": trial.user_attrs.get(EPOCHS_TRAINED),
        "duration_s": _duration(trial),
        "worker": f"{tag['host']}:{tag['pid']}" if tag else None,
        "retry_of": retried,
    }


def shown_trials(trials) -> list:
    """The trials a table shows: every one that ran (surplus ones never did)."""
    return [t for t in trials if not t.user_attrs.get(SURPLUS) and t.state.name != "WAITING"]


def summary(trials, n_trials: int, metric: str, second: str | None, choice: Choice, pruner: str, storage: str) -> dict:
    """``trials.json``: the search at a glance, then every trial that ran."""
    shown = shown_trials(trials)
    states = [state_name(t) for t in shown]
    return {
        "metric": f"eval_{metric}",
        "objectives": [f"maximize eval_{metric}"] + ([f"minimize {second}"] if second else []),
        "n_trials": n_trials,
        "counts": {s: states.count(s) for s in ("complete", "pruned", "failed")},
        "pruner": pruner,
        "storage": storage,
        "best": choice.trial.number,
        "rule": choice.rule,
        "pareto_front": [t.number for t in pareto_front(trials)] if second else [],
        "trials": [trial_record(t) for t in shown],
    }


def write_outputs(study, out_dir: Path, record: dict, second: str | None, metric: str, log: logging.Logger) -> None:
    """``trials.json``, the plots (PNG) and ``study.db`` in ``out_dir``; a plot Optuna cannot
    draw (e.g. importances from one trial) is left out and the log says why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {}
    for name, title in PLOTS.items():
        path = out_dir / f"{name}.png"
        try:
            drawn = _plot(study, name, path, second, metric)
        except Exception as err:  # a plot is a picture of the study, never a reason to fail the stage
            log.info("No %s plot: %s", name.replace("_", " "), str(err).splitlines()[0] if str(err) else type(err))
            drawn = False
        if drawn:
            plots[name] = {"file": path.name, "title": title}
    TrialsRecord(**{**record, "plots": plots}).write(out_dir)
    optuna = _optuna()
    try:
        optuna.copy_study(
            from_study_name=study.study_name,
            from_storage=study._storage,
            to_storage=f"sqlite:///{(out_dir / STUDY_DB).resolve()}",
        )
    except Exception as err:
        (out_dir / STUDY_DB).unlink(missing_ok=True)
        log.warning("The study was not copied into the output (%s: %s)", type(err).__name__, err)


def _plot(study, name: str, path: Path, second: str | None, metric: str) -> bool:
    import matplotlib

    with matplotlib.rc_context():  # Optuna's plots switch the global style to ggplot
        return _draw(study, name, path, second, metric)


def _draw(study, name: str, path: Path, second: str | None, metric: str) -> bool:
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    trials = study.get_trials(deepcopy=False)
    target = (lambda t: t.values[0]) if second else None
    label = f"eval {metric}"
    if name == "optimization_history":
        ax = vis.plot_optimization_history(study, target=target, target_name=label)
    elif name == "intermediate_values":
        if second or not any(t.intermediate_values for t in trials):
            return False
        ax = vis.plot_intermediate_values(study)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
    elif name == "param_importances":
        if len(complete(trials)) < 2:
            return False
        ax = vis.plot_param_importances(study, target=target, target_name=label)
    elif name == "pareto_front":
        if not second:
            return False
        ax = vis.plot_pareto_front(study, target_names=[label, second])
    else:
        raise ValueError(name)
    figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    try:
        figure.savefig(path, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
    return True
