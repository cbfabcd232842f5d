"""The accuracy-vs-latency figure of benchmark rows: one point per model, area = size in MB.

The one drawing function of the project: :meth:`recipes.RunResult.plot` returns it, and
``hubtools push`` saves it as the card's ``accuracy_vs_latency.png``. Drawn on a figure with its
own Agg canvas: no ``pyplot``, no backend chosen, so drawing changes no global matplotlib state.
The figure has a ``_repr_png_``, so Jupyter shows it inline whatever the backend. Labels are
stacked so that close points do not overwrite each other, and the legend sits below the axes,
never on the data.

Example::

    from recipes.measure.plot import accuracy_latency_figure

    fig = accuracy_latency_figure(benchmark_rows, baseline="teacher", published="quantize")
    fig.savefig("plot.png")
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable

#: Point area (points^2) per MB, and the smallest area a point gets.
AREA_PER_MB = 6.0
MIN_AREA = 30.0
#: Vertical gap between two labels, and how close (horizontally) two labels may be, in points.
LABEL_GAP = 11.0
LABEL_WIDTH = 65.0
#: The colour of the ring around the published model.
PUBLISHED_COLOR = "crimson"
#: The box behind each label.
LABEL_BOX = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.75}


def mean_latency(row: dict) -> float:
    """A benchmark row's mean batch-1 latency in the one process that measured every row."""
    return row["latency_ms"]["mean"]


def pareto_front(rows: list[dict], latency: Callable[[dict], float] = mean_latency) -> list[dict]:
    """The rows no other row beats on both axes of the plot (at least as accurate and as fast,
    better in one), fastest first: the best accuracy each latency budget buys."""

    def beats(a: dict, b: dict) -> bool:
        acc_a, acc_b, lat_a, lat_b = a["accuracy"], b["accuracy"], latency(a), latency(b)
        return acc_a >= acc_b and lat_a <= lat_b and (acc_a > acc_b or lat_a < lat_b)

    front = [r for r in rows if not any(beats(o, r) for o in rows if o is not r)]
    return sorted(front, key=lambda r: (latency(r), r["accuracy"]))


def _label_offsets(points: list[tuple[float, float]]) -> list[float]:
    """A vertical offset (points) per label, so that labels of nearby points do not overlap.

    ``points`` are where the labels start, in points (display units / dpi * 72). Labels are
    placed from the lowest point up; one that would land on a label already placed near it
    moves above that label."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], points[i][0]))
    offsets, placed = [0.0] * len(points), []
    for i in order:
        x, y = points[i]
        top = y
        for px, py in sorted(placed, key=lambda p: p[1]):
            if abs(px - x) < LABEL_WIDTH and abs(py - top) < LABEL_GAP:
                top = py + LABEL_GAP
        offsets[i] = top - y
        placed.append((x, top))
    return offsets


@functools.cache
def _figure_class():
    from matplotlib.figure import Figure

    class AccuracyLatencyFigure(Figure):
        """A matplotlib Figure that Jupyter (IPython) shows as a PNG without pyplot."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png")
            return buffer.getvalue()

    return AccuracyLatencyFigure


def accuracy_latency_figure(
    rows: list[dict],
    baseline: str | None = None,
    published: str | None = None,
    title: str | None = None,
    front: bool = True,
    latency: Callable[[dict], float] = mean_latency,
    xlabel: str = "mean latency per query (ms, batch 1)",
):
    """The figure of ``rows`` (``benchmark.json`` rows: ``name``, ``accuracy``, ``size_mb``,
    ``latency_ms.mean``): x = ``latency(row)`` (ms), y = accuracy, point area = size. The
    ``published`` model is circled, the ``baseline`` labelled, and with ``front`` the Pareto front
    on these axes (:func:`pareto_front`) is drawn as a step line.

    Returns a :class:`matplotlib.figure.Figure` with one scatter collection of the points first
    (``fig.axes[0].collections[0]``, one offset per row, in row order)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _figure_class()(figsize=(7.5, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [latency(r) for r in rows]
    ys = [r["accuracy"] for r in rows]
    areas = [max(MIN_AREA, AREA_PER_MB * r["size_mb"]) for r in rows]
    ax.scatter(
        xs,
        ys,
        s=areas,
        c=[f"C{i % 10}" for i in range(len(rows))],
        alpha=0.6,
        edgecolors="black",
        linewidths=0.5,
        zorder=3,
    )
    radii = [math.sqrt(area) / 2 for area in areas]  # a marker's size is its area in points^2
    for i, (row, x, y, area) in enumerate(zip(rows, xs, ys, areas, strict=True)):
        if row["name"] == published:
            ring = area * 2.2 + 120
            ax.scatter(
                [x],
                [y],
                s=ring,
                facecolors="none",
                edgecolors=PUBLISHED_COLOR,
                linewidths=2,
                label=f"published: {published}",
                zorder=4,
            )
            radii[i] = math.sqrt(ring) / 2
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20
    if log_x:
        ax.set_xscale("log")
    best = pareto_front(rows, latency) if front and len(rows) > 1 else []
    if len(best) > 1:
        ax.step(
            [latency(r) for r in best],
            [r["accuracy"] for r in best],
            where="post",
            color="grey",
            linestyle="--",
            linewidth=1,
            label="Pareto front (accuracy vs latency)",
            zorder=2,
        )
    ax.margins(0.25)
    if not log_x and xs and ax.get_xlim()[0] < 0 <= min(xs):
        ax.set_xlim(left=0)  # no negative latencies on the axis
    fig.canvas.draw()  # the data-to-display transform is final only once the limits are set
    to_points = 72.0 / fig.dpi
    display = ax.transData.transform(list(zip(xs, ys, strict=True))) if rows else []
    starts = [(px * to_points + r + 3, py * to_points - 3) for (px, py), r in zip(display, radii, strict=True)]
    offsets = _label_offsets(starts)
    for row, x, y, r, dy in zip(rows, xs, ys, radii, offsets, strict=True):
        label = row["name"] + (" (baseline)" if row["name"] == baseline else "")
        arrow = {"arrowstyle": "-", "color": "grey", "linewidth": 0.5, "shrinkA": 0, "shrinkB": r}
        ax.annotate(
            label,
            (x, y),
            textcoords="offset points",
            xytext=(r + 3, dy - 3),
            fontsize=8,
            arrowprops=arrow if dy >= LABEL_GAP else None,
            bbox=LABEL_BOX,  # a line of the front that passes under a label does not cross its text
            zorder=5,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title or "Accuracy vs latency (point area = size in MB)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
