"""A model measured alone, in a fresh process: what a user who serves it gets.

One process holding many models is not what a user runs: their thread pools, allocators and
caches share the machine. :func:`alone` measures each model in a process of its own, started
fresh for every model and every repeat, alternating models across repeats (A B C, B C A, ...)
like the in-process rounds: the same ``serve(query)`` call, the same thread budget. A probe
reports:

* ``load_s``: from disk to a ready pipeline, after the libraries its format needs were imported
  (``register_loader(..., preload=...)``), so it is the model's time, not the libraries';
* ``first_call_ms`` and ``peak_rss_mb`` (``VmHWM``) after serving the given queries, and
  ``rss_before_load_mb`` (what the process held once its libraries were imported);
* ``alone_latency_ms``: ``runs`` timed calls of the query after ``warmup`` untimed ones.

A probe that fails leaves its fields out and says why (``probe_error``).
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .latency import STATISTICS, latency_stats, order_of_round, time_calls


def _proc_status_mb(field_name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    peak = _proc_status_mb("VmHWM")
    if peak is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = usage / 2**20 if sys.platform == "darwin" else usage / 1024.0
    return peak


def probe_here(request: dict) -> dict:
    """In this process: import the format's libraries, load the model, serve, time it."""
    from threadpoolctl import threadpool_limits

    from ..ml.modelio import PRELOAD, load_classifier
    from ..runfolder import read_format

    for module in request.get("register", ()):
        importlib.import_module(module)  # modules that register the loader of their format
    path, threads = Path(request["path"]), int(request["threads"])
    with threadpool_limits(limits=threads):
        for module in PRELOAD.get(read_format(path).format, ("torch", "transformers")):
            importlib.import_module(module)
        gc.collect()
        before = _proc_status_mb("VmRSS")
        start = time.perf_counter()
        serve = load_classifier(path, threads).make_pipeline()
        load_s = time.perf_counter() - start
        queries = request["queries"]
        first = time_calls(serve, queries[:1])
        for query in queries[1:]:
            serve(query)
        for _ in range(request["warmup"]):
            serve(request["query"])
        seconds = time_calls(serve, [request["query"]] * request["runs"])
    return {
        "load_s": load_s,
        "first_call_ms": first[0] * 1000.0 if first else None,
        "rss_before_load_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "served": len(queries),
        "alone_latency_ms": latency_stats(seconds),
    }


def probe(request: dict, timeout_s: float = 900.0) -> dict:
    """:func:`probe_here` in a fresh ``python -m recipes.measure.probe`` process (same
    environment, same CPU affinity)."""
    with tempfile.TemporaryDirectory(prefix="recipes-probe-") as tmp:
        ask, out = Path(tmp) / "request.json", Path(tmp) / "probe.json"
        ask.write_text(json.dumps(request))
        cmd = [sys.executable, "-m", "recipes.measure.probe", str(ask), str(out)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=os.environ.copy())
        except subprocess.TimeoutExpired:
            return {"probe_error": f"timed out after {timeout_s:.0f} s"}
        if done.returncode != 0 or not out.is_file():
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
            return {"probe_error": f"exit {done.returncode}: {tail[0]}"}
        return json.loads(out.read_text())


def alone(
    folders: dict[str, Path],
    threads: int,
    query: str,
    runs: int,
    warmup: int,
    repeats: int,
    queries: list[str] = (),
    register: tuple[str, ...] = (),
) -> dict[str, dict]:
    """Every model probed ``repeats`` times, a fresh process each, alternating models across
    repeats. Per model: the medians over repeats of ``load_s``, ``first_call_ms``, ``peak_rss_mb``
    and ``rss_before_load_mb``, and ``alone_latency_ms``: the median over repeats of each latency
    statistic, with ``spread_pct`` of the per-repeat means (as the in-process rounds report it)."""
    names = list(folders)
    found: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(repeats):
        for name in order_of_round(names, r):
            request = {
                "path": str(folders[name]),
                "threads": threads,
                "query": query,
                "queries": list(queries) or [query],
                "runs": runs,
                "warmup": warmup,
                "register": list(register),
            }
            found[name].append(probe(request))
    return {name: _summary(results) for name, results in found.items()}


def _summary(results: list[dict]) -> dict:
    good = [r for r in results if "probe_error" not in r]
    if not good:
        return {"probe_error": results[-1]["probe_error"] if results else "not probed"}
    out = {
        key: float(np.median([r[key] for r in good]))
        for key in ("load_s", "first_call_ms", "peak_rss_mb", "rss_before_load_mb")
        if all(r.get(key) is not None for r in good)
    }
    stats = [r["alone_latency_ms"] for r in good]
    latency = {k: float(np.median([s[k] for s in stats])) for k in STATISTICS}
    means = [s["mean"] for s in stats]
    latency["spread_pct"] = 100.0 * (max(means) - min(means)) / latency["mean"] if latency["mean"] else 0.0
    latency["repeat_means"] = means
    out["alone_latency_ms"] = latency
    out["probes"] = len(good)
    return out


def main(argv: list[str]) -> int:
    request_file, out = argv
    logging.disable(logging.WARNING)
    result = probe_here(json.loads(Path(request_file).read_text()))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(
            "usage: python -m recipes.measure.probe REQUEST_JSON OUT_JSON (started by recipes.measure.probe.alone)"
        )
    sys.exit(main(sys.argv[1:]))
