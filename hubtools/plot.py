"""The card's plot: :func:`recipes.accuracy_latency_figure` of the run's benchmark, saved as a PNG.

One drawing function for the whole project, so the card shows what ``RunResult.plot()`` shows
in a notebook. No ``pyplot``: importing or calling this leaves matplotlib's global state alone.
"""

from __future__ import annotations

from pathlib import Path

from recipes import accuracy_latency_figure
from recipes.runfolder import BenchmarkResult


def accuracy_latency_plot(
    benchmark: BenchmarkResult, published: str, out_path: Path, title: str | None = None
) -> Path:
    """Write ``out_path`` (PNG): x = mean latency (ms), y = accuracy, point area = size (MB); the
    ``published`` model circled, the baseline labelled, the Pareto front drawn."""
    fig = accuracy_latency_figure(benchmark.models, baseline=benchmark.baseline, published=published, title=title)
    out_path = Path(out_path)
    fig.savefig(out_path, format="png")
    return out_path
