"""Pictures of a run: learning curve, per-type F1, entity confusion between types.

Drawn with matplotlib, an optional extra (``pip install 'bner[plots]'``): without it
:func:`write_run_plots` says so in one line and draws nothing. Each picture is written
atomically as PNG beside the run's results.
"""

from __future__ import annotations

import io as _bytes
import logging
from collections.abc import Callable

from bner import io
from bner.folders.run_folder import CONFUSION, LEARNING_CURVE, PER_TYPE_F1
from bner.inference.evaluate import MISSED, SPURIOUS

log = logging.getLogger(__name__)

SPLIT_COLOURS = {"dev": "#8da0cb", "test": "#fc8d62"}


def matplotlib_pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when the extra is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_run_plots(
    out: str, loss_curve: list, history: list, scores: dict[str, dict], confusion: dict | None, say: Callable[[str], None] = print,
) -> list[str]:
    """Draw the run's pictures into ``out``; the paths written (none without matplotlib)."""
    plt = matplotlib_pyplot()
    if plt is None:
        say("pictures skipped: matplotlib is not installed (pip install 'bner[plots]')")
        return []
    written = []
    drawings = [
        (LEARNING_CURVE, lambda: learning_curve(plt, loss_curve, history), bool(loss_curve)),
        (PER_TYPE_F1, lambda: per_type_f1(plt, scores), any(s.get("per_type") for s in scores.values())),
        (CONFUSION, lambda: confusion_heatmap(plt, confusion), bool(confusion and confusion.get("matrix"))),
    ]
    for name, draw, has_data in drawings:
        if not has_data:
            continue
        figure = draw()
        path = io.join(out, name)
        save_png(plt, figure, path)
        written.append(path)
    if written:
        say(f"wrote {', '.join(name for name, _, has in drawings if has)} to {out}")
    return written


def save_png(plt, figure, path: str) -> None:
    buffer = _bytes.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    io.write_bytes(path, buffer.getvalue())


def learning_curve(plt, loss_curve: list, history: list):
    """Training loss over steps (left axis) and dev F1 after each epoch (right axis)."""
    figure, loss_axis = plt.subplots(figsize=(8, 4.5))
    steps = [point[0] for point in loss_curve]
    losses = [point[1] for point in loss_curve]
    loss_axis.plot(steps, losses, color="#4c72b0", linewidth=1.4, label="training loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss", color="#4c72b0")
    loss_axis.set_ylim(bottom=0)
    loss_axis.grid(alpha=0.3)
    epochs = [h for h in history if "dev_f1" in h]
    lines = loss_axis.get_lines()
    if epochs:
        f1_axis = loss_axis.twinx()
        f1_axis.plot([h["step"] for h in epochs], [100 * h["dev_f1"] for h in epochs], color="#dd8452", marker="o",
                     linewidth=1.6, label="dev F1 (entity)")
        for h in epochs:
            f1_axis.annotate(f"{100 * h['dev_f1']:.1f}", (h["step"], 100 * h["dev_f1"]), textcoords="offset points",
                             xytext=(0, 7), ha="center", fontsize=8, color="#dd8452",
                             # A white backing keeps a label readable where the loss line runs behind it.
                             bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.9})
        f1_axis.set_ylabel("dev F1", color="#dd8452")
        f1_axis.set_ylim(0, 105)
        lines = lines + f1_axis.get_lines()
    loss_axis.legend(lines, [line.get_label() for line in lines], loc="center right")
    loss_axis.set_title("Learning curve")
    return figure


def per_type_f1(plt, scores: dict[str, dict]):
    """Horizontal bars: each type's F1 on dev and test, with its number of gold entities."""
    splits = [name for name in ("dev", "test") if scores.get(name, {}).get("per_type")]
    types = sorted({t for name in splits for t in scores[name]["per_type"]}, reverse=True)
    height = 0.8 / len(splits)
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.55 * len(types) * len(splits)))
    for i, name in enumerate(reversed(splits)):  # dev above test in each type's pair
        per_type = scores[name]["per_type"]
        positions = [row + (i - (len(splits) - 1) / 2) * height for row in range(len(types))]
        values = [100 * per_type.get(t, {}).get("f1", 0.0) for t in types]
        bars = axis.barh(positions, values, height=height * 0.92, color=SPLIT_COLOURS[name],
                         label=f"{name} (overall F1 {100 * scores[name]['f1']:.1f})")
        for bar, t, value in zip(bars, types, values):
            support = per_type.get(t, {}).get("gold", 0)
            axis.text(value + 1, bar.get_y() + bar.get_height() / 2, f"{value:.1f}  (n={support})", va="center", fontsize=8)
    axis.set_yticks(range(len(types)), types)
    axis.set_xlim(0, 118)
    axis.set_xlabel("entity F1")
    handles, labels = axis.get_legend_handles_labels()
    axis.legend(handles[::-1], labels[::-1], loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(splits), fontsize=8, frameon=False)
    axis.set_title("F1 per entity type (n = gold entities)")
    axis.grid(axis="x", alpha=0.3)
    return figure


def confusion_heatmap(plt, confusion: dict):
    """Gold types (rows, plus spurious predictions) against predicted types (columns, plus misses)."""
    types = confusion["types"]
    rows, columns = [*types, SPURIOUS], [*types, MISSED]
    values = [[confusion["matrix"].get(r, {}).get(c, 0) for c in columns] for r in rows]
    size = len(columns)
    figure, axis = plt.subplots(figsize=(2.2 + 0.85 * size, 1.6 + 0.6 * len(rows)))
    image = axis.imshow(values, cmap="Blues")
    peak = max((v for row in values for v in row), default=0)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if value:
                axis.text(j, i, str(value), ha="center", va="center", fontsize=9,
                          color="white" if value > peak / 2 else "#1f2328")
    axis.set_xticks(range(size), columns, rotation=35, ha="right")
    axis.set_yticks(range(len(rows)), rows)
    axis.set_xlabel("predicted")
    axis.set_ylabel("gold")
    axis.set_title(f"Entity confusion ({confusion.get('split', 'test')}): exact spans")
    figure.colorbar(image, ax=axis, fraction=0.04)
    return figure
