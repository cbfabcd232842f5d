"""The search's study outlives its process and is shared: a search killed with SIGKILL resumes to
exactly ``n_trials``; worker processes and the main run share one study, in SQLite and in a
real PostgreSQL server (``RECIPES_TEST_POSTGRES_URL``, which ``.ci/run`` sets; skipped without)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest

from recipes.engine.runner import Runner
from recipes.plan.loader import load_recipe
from recipes.runfolder import STATE_DIR, pid_alive

from .tiny import REPO_ROOT, clinc_dataset, tiny_bert, write_recipe

POSTGRES_ENV = "RECIPES_TEST_POSTGRES_URL"


def search_recipe(folder, clinc_dir, n_trials: int, epochs: int, **search) -> str:
    tiny_bert(folder / "teacher", layers=2)
    recipe = {
        "name": "shared",
        "description": "a search that several processes share",
        "dataset": clinc_dataset(150, 150, 20, eval_on_train=True, id=str(clinc_dir)),
        "models": {"teacher": "./teacher"},
        "stages": [
            {
                "name": "search",
                "type": "search-distill",
                "input": "teacher",
                "keep_layers": [1],
                "batch_size": 16,
                "epochs": epochs,
                "n_trials": n_trials,
                "pruner": "none",
                "space": {
                    "alpha": {"low": 0.0, "high": 1.0},
                    "learning_rate": {"low": 3.0e-3, "high": 3.0e-2, "log": True},
                },
                **search,
            }
        ],
    }
    return str(write_recipe(folder, recipe, "shared.yaml"))


def cli(*args, log_path=None) -> subprocess.Popen:
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "recipes", *map(str, args)], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
    )


def study_of(run_dir) -> dict:
    return json.loads((run_dir / "search" / "study" / "trials.json").read_text())


def params_key(trial: dict) -> str:
    return json.dumps(trial["params"], sort_keys=True)


@pytest.mark.timeout(600)  # a search killed midway, then resumed to its end
def test_a_killed_search_resumes_to_exactly_n_trials(clinc_dir, tmp_path):
    n_trials = 4
    path = search_recipe(tmp_path, clinc_dir, n_trials, epochs=2)
    out = tmp_path / "out"
    proc = cli("run", path, "--output-dir", out, "--no-publish", log_path=tmp_path / "first.log")
    run_log = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill it once trial 0 is complete and trial 1 has started
            logs = list(out.glob("*/shared/run.log"))
            if logs and "Trial 1 (main" in logs[0].read_text():
                run_log = logs[0]
                break
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run_log is not None, "the search never got to its second trial"
    assert "Trial 0 complete" in run_log.read_text()
    run_dir = run_log.parent
    (state,) = (run_dir / STATE_DIR).iterdir()
    with sqlite3.connect(state / "study.db") as db:
        left = dict(db.execute("SELECT number, state FROM trials").fetchall())
    assert left[0] == "COMPLETE" and left[1] == "RUNNING", left  # what the kill left behind
    assert list(run_dir.glob(".search.tmp-*")), "the killed run left no temporary folder"

    run = Runner(output_root=out).run(load_recipe(path))  # the same command again

    text = run_log.read_text()
    assert "Resuming study shared.search." in text and "1 of 4 trials done" in text
    assert "Trial(s) 1 stopped with their process" in text
    assert not list(run_dir.glob(".search.tmp-*")) and not (run_dir / STATE_DIR).exists()
    record = json.loads((run.out_dir / "search" / ".stage.json").read_text())
    assert record["fingerprint"].startswith(state.name.rsplit("-", 1)[1])  # the interruption changed no key
    study = study_of(run.out_dir)
    states = [t["state"] for t in study["trials"]]
    assert states.count("complete") == n_trials and states.count("failed") == 1, study["trials"]
    failed = next(t for t in study["trials"] if t["state"] == "failed")
    redone = next(t for t in study["trials"] if t["retry_of"] == failed["number"])
    assert failed["number"] == 1 and redone["state"] == "complete" and redone["params"] == failed["params"]
    complete = [t for t in study["trials"] if t["state"] == "complete"]
    assert len({params_key(t) for t in complete}) == n_trials, "a parameter set ran twice"
    assert record["metrics"]["n_complete"] == n_trials


def share_study(tmp_path, clinc_dir, storage: str | None) -> tuple[dict, set[int]]:
    """Two workers started first (they wait for the study), then the main run; returns the
    study's table and the workers' pids."""
    n_trials = 6
    path = search_recipe(tmp_path, clinc_dir, n_trials, epochs=2, **({"storage": storage} if storage else {}))
    out = tmp_path / "out"
    workers = [
        cli("worker", path, "--stage", "search", "--output-dir", out, "--threads", "1", "--wait-s", "180",
            log_path=tmp_path / f"worker-{i}.log")
        for i in range(2)
    ]  # fmt: skip
    try:
        deadline = time.time() + 180
        for i, worker in enumerate(workers):  # each has planned the stage and now waits for the study
            log = tmp_path / f"worker-{i}.log"
            while "Worker for stage 'search'" not in log.read_text():
                assert worker.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        run = Runner(output_root=out).run(load_recipe(path))
        for i, worker in enumerate(workers):
            assert worker.wait(timeout=120) == 0, (tmp_path / f"worker-{i}.log").read_text()[-3000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for i in range(2):
        text = (tmp_path / f"worker-{i}.log").read_text()
        assert "Joined study shared.search." in text and "worker done:" in text, text[-3000:]
        assert "training step" in text and "it/s]" not in text, "a worker's log file got progress bars"
    return study_of(run.out_dir), {w.pid for w in workers}


def assert_shared(study: dict, worker_pids: set[int]) -> None:
    trials = study["trials"]
    assert [t["state"] for t in trials].count("complete") == study["n_trials"] == len(trials), trials
    assert len({params_key(t) for t in trials}) == len(trials), "a parameter set ran twice"
    pids = {int(t["worker"].rsplit(":", 1)[1]) for t in trials}
    assert pids & worker_pids and os.getpid() in pids, f"trials ran in {pids}: the processes did not share"


@pytest.mark.timeout(600)  # a whole search, shared by three processes
def test_workers_and_the_main_run_share_a_sqlite_study(clinc_dir, tmp_path):
    study, worker_pids = share_study(tmp_path, clinc_dir, storage=None)
    assert_shared(study, worker_pids)
    assert study["storage"].startswith("sqlite")


def test_run_workers_starts_local_workers_and_ends_with_them(clinc_dir, tmp_path):
    path = search_recipe(tmp_path, clinc_dir, n_trials=4, epochs=1)
    run = Runner(output_root=tmp_path / "out", workers=3).run(load_recipe(path))
    text = (run.out_dir / "run.log").read_text()
    pids = [
        int(line.split("pid ")[1].split(",")[0]) for line in text.splitlines() if "Worker " in line and ": pid" in line
    ]
    assert len(pids) == 2 and "1 thread(s)" in text
    assert not any(pid_alive(pid) for pid in pids), "a worker outlived the stage"
    study = study_of(run.out_dir)
    assert [t["state"] for t in study["trials"]].count("complete") == 4 == len(study["trials"])
    assert {int(t["worker"].rsplit(":", 1)[1]) for t in study["trials"]} <= {os.getpid(), *pids}


@pytest.fixture
def postgres_url():
    """A fresh database on the PostgreSQL server that ``RECIPES_TEST_POSTGRES_URL`` names (a
    SQLAlchemy URL without password; the password, if any, in PGPASSWORD), dropped afterwards."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to test on (.ci/run starts one)")
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"recipes_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as err:
        pytest.skip(f"PostgreSQL at {make_url(url).render_as_string()} refused a test database: {err}")
    yield make_url(url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.timeout(600)  # a whole search, shared by three processes
def test_workers_and_the_main_run_share_a_postgres_study(clinc_dir, tmp_path, postgres_url):
    study, worker_pids = share_study(tmp_path, clinc_dir, storage=postgres_url)
    assert_shared(study, worker_pids)
    assert study["storage"].startswith("postgresql+psycopg://")


# --- the bookkeeping alone, on a study without training ---------------------------------------------


@pytest.fixture
def bare_study(tmp_path):
    import optuna

    from recipes.ml import study as studies

    with studies.quiet_optuna():
        storage = studies.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
        yield optuna.create_study(storage=storage, study_name="bare", direction="maximize")


def test_dead_and_interrupted_trials_are_failed_and_queued_again_once(bare_study):
    import logging
    import socket

    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from recipes.ml import study as studies

    space = {"x": FloatDistribution(0, 1)}
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = bare_study.ask(space)
    dead.set_user_attr(studies.WORKER, {"host": socket.gethostname(), "pid": gone.pid})
    live = bare_study.ask(space)
    live.set_user_attr(studies.WORKER, studies.worker_tag())
    elsewhere = bare_study.ask(space)  # another machine's: left to its heartbeat
    elsewhere.set_user_attr(studies.WORKER, {"host": "another-machine", "pid": gone.pid})
    interrupted = bare_study.ask(space)
    interrupted.set_user_attr(studies.INTERRUPTED, True)
    bare_study.tell(interrupted, state=TrialState.FAIL)
    log = logging.getLogger("test")

    assert sorted(studies.reclaim(bare_study, log)) == [dead.number, interrupted.number]
    trials = bare_study.get_trials()
    assert [trials[t.number].state for t in (dead, live, elsewhere)] == [
        TrialState.FAIL,
        TrialState.RUNNING,
        TrialState.RUNNING,
    ]
    queued = {t.system_attrs["failed_trial"]: t.params for t in trials if t.state == TrialState.WAITING}
    assert queued == {dead.number: trials[dead.number].params, interrupted.number: trials[interrupted.number].params}
    assert studies.reclaim(bare_study, log) == []  # queued once, not again at every look


def test_a_trial_that_would_make_more_than_n_trials_is_surplus(bare_study):
    from optuna.trial import TrialState

    from recipes.ml import study as studies

    first, second, third = (bare_study.ask() for _ in range(3))  # started at once by three processes
    assert [studies.is_surplus(bare_study, t.number, 2) for t in (first, second, third)] == [False, False, True]
    bare_study.tell(first, 0.5)
    bare_study.tell(second, state=TrialState.FAIL)  # a failed trial does not count: the third may run
    assert not studies.is_surplus(bare_study, third.number, 2)
    bare_study.set_user_attr(studies.CLOSED, "finished")
    assert studies.is_surplus(bare_study, third.number, 2)


def test_the_kept_trial_and_its_rule():
    import optuna
    from optuna.distributions import FloatDistribution

    from recipes.ml import study as studies

    def trial(number, *values):
        made = optuna.create_trial(
            values=list(values), params={"x": 0.1}, distributions={"x": FloatDistribution(0, 1)}
        )
        made.number = number
        return made

    single = [trial(0, 0.8), trial(1, 0.9), trial(2, 0.9)]
    assert studies.choose(single, "accuracy", None, 0).trial.number == 1  # the earliest of a tie
    two = [trial(0, 0.90, 60.0), trial(1, 0.89, 30.0), trial(2, 0.80, 40.0), trial(3, 0.85, 20.0)]
    assert [t.number for t in studies.pareto_front(two)] == [0, 1, 3]
    most_accurate = studies.choose(two, "accuracy", "size_mb", 0.0)
    assert most_accurate.trial.number == 0 and "highest eval accuracy" in most_accurate.rule
    small = studies.choose(two, "accuracy", "size_mb", 0.02)
    assert small.trial.number == 1 and "within 0.02 of the best (0.9000)" in small.rule


def test_processes_opening_a_new_postgres_database_at_once(postgres_url):
    """The first processes on a fresh database race to create Optuna's schema; none may fail."""
    code = "import sys; from recipes.ml.study import open_storage; open_storage(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, postgres_url], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), [e.strip().splitlines()[-1:] for e in errors]
