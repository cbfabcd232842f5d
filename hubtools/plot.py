"""The accuracy-vs-latency plot of a benchmark: one point per model, area = size in MB."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402

#: Point area (points^2) per MB, and the smallest area a point gets.
AREA_PER_MB = 6.0
MIN_AREA = 30.0


def accuracy_latency_plot(benchmark: dict, published: str, out_path: Path, title: str | None = None) -> Path:
    """Write a PNG: x = mean latency (ms), y = accuracy, point area = size (MB).

    The published model is circled and the baseline row is labelled as such.
    """
    rows = benchmark["models"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for i, row in enumerate(rows):
        x, y = row["latency_ms"]["mean"], row["accuracy"]
        area = max(MIN_AREA, AREA_PER_MB * row["size_mb"])
        ax.scatter([x], [y], s=area, alpha=0.6, edgecolors="black", linewidths=0.5)
        label = row["name"] + (" (baseline)" if row["name"] == benchmark["baseline"] else "")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(8, 6 - 14 * (i % 2)), fontsize=9)
        if row["name"] == published:
            ax.scatter([x], [y], s=area * 2.2 + 120, facecolors="none", edgecolors="crimson", linewidths=2,
                       label=f"published: {published}")
    means = [r["latency_ms"]["mean"] for r in rows]
    if min(means) > 0 and max(means) / min(means) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("mean latency per query (ms, batch 1)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "Accuracy vs latency (point area = size in MB)")
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    if any(r["name"] == published for r in rows):
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, format="png")
    plt.close(fig)
    return out_path
