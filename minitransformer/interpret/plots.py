"""The figures of `minitransformer inspect` and chapter 11, as PNG files.

    dendrogram(clusters, path)                    the heads' hierarchical clustering, and their 2-D map
    importance_map(scores, path)                  layer × head importance, one panel per stack
    pruning_plot(curves, path)                    BLEU against the fraction of heads removed
    methods_side_by_side(explained, gold, path)   every method on one sentence, gold links outlined

matplotlib through its object interface with the Agg renderer, like viz/png.py: no
pyplot, no display.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .clustering import leaf_order

PATTERN_COLOURS = {"previous": "tab:blue", "next": "tab:orange", "self": "tab:green", "eos/punct": "tab:red",
                   "broad": "tab:grey"}


def _save(figure, path):
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def dendrogram(clusters, path, title="heads clustered by Jensen–Shannon distance"):
    """Left: the dendrogram (leaves coloured by their pattern); right: the MDS map."""
    merges, names = clusters.merges, clusters.names
    n_heads = len(names)
    order = leaf_order(merges)
    x_of = {leaf: float(position) for position, leaf in enumerate(order)}
    height = {leaf: 0.0 for leaf in range(n_heads)}
    figure = Figure(figsize=(12, 4.5))
    tree, plane = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    for step, (a, b, distance, _) in enumerate(merges):
        a, b = int(a), int(b)
        xa, xb = x_of[a], x_of[b]
        tree.plot([xa, xa, xb, xb], [height[a], distance, distance, height[b]], color="black", lw=1)
        x_of[n_heads + step], height[n_heads + step] = (xa + xb) / 2, distance
    tree.set_xticks(range(n_heads), labels=[names[i] for i in order], rotation=90, fontsize=7)
    for tick, leaf in zip(tree.get_xticklabels(), order):
        tick.set_color(PATTERN_COLOURS[clusters.head_patterns[leaf]])
    tree.set_ylabel("mean JS distance (average linkage)")
    tree.set_title(title, fontsize=9)
    for pattern, colour in PATTERN_COLOURS.items():
        plane.scatter([], [], color=colour, label=pattern)
    xy = clusters.coordinates
    for i, name in enumerate(names):
        plane.scatter(xy[i, 0], xy[i, 1], color=PATTERN_COLOURS[clusters.head_patterns[i]], s=30)
        plane.annotate(f"{name} [{clusters.labels[i]}]", xy[i], fontsize=6, xytext=(3, 2), textcoords="offset points")
    plane.set_title("2-D map (classical MDS); [cluster]", fontsize=9)
    plane.legend(fontsize=7, loc="best")
    return _save(figure, path)


def importance_map(scores, path, title="head importance, E|∂L/∂g_h| normalized per layer", ablation=None):
    """scores {stack: (L, H)}; ablation {stack: (L, H)} BLEU change, written in each cell."""
    stacks = list(scores)
    figure = Figure(figsize=(3.6 * len(stacks) + 0.8, 2.9), layout="constrained")
    panels = figure.subplots(1, len(stacks), squeeze=False)[0]
    for ax, stack in zip(panels, stacks):
        table = np.asarray(scores[stack])
        image = ax.imshow(table, cmap="magma", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(table.shape[1]), labels=[f"h{h}" for h in range(table.shape[1])], fontsize=7)
        ax.set_yticks(range(table.shape[0]), labels=[f"layer {l}" for l in range(table.shape[0])], fontsize=7)
        ax.set_title(stack, fontsize=9)
        for (layer, head), value in np.ndenumerate(table):
            text = f"{value:.2f}" + (f"\n{ablation[stack][layer][head]:+.1f}" if ablation is not None else "")
            ax.text(head, layer, text, ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black")
    figure.colorbar(image, ax=list(panels), shrink=0.8)
    figure.suptitle(title + ("\nin each cell, below: the BLEU change without that head" if ablation is not None else ""),
                    fontsize=9)
    return _save(figure, path)


def pruning_plot(curves, path, title="BLEU as heads are removed"):
    """curves {label: [(fraction, removed, bleu)]}."""
    figure = Figure(figsize=(5.5, 3.6))
    ax = figure.subplots()
    for label, curve in curves.items():
        ax.plot([c[0] for c in curve], [c[2] for c in curve], "o-", label=label, ms=3)
    ax.set_xlabel("fraction of all attention heads removed")
    ax.set_ylabel("BLEU (greedy)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(figure, path)


def methods_side_by_side(explained, gold, path, methods=None):
    """One panel per method: French words (rows) × English words (columns), gold links
    outlined in white, each row's argmax dotted."""
    methods = methods or ["attention", "rollout", "gradient-weighted attention", "gradient × input",
                          "integrated gradients"]
    n_fr, n_en = len(explained.french), len(explained.english)
    figure = Figure(figsize=(2.4 * len(methods) + 1, 0.28 * n_fr + 1.6))
    panels = figure.subplots(1, len(methods), squeeze=False)[0]
    for ax, method in zip(panels, methods):
        matrix = explained.methods[method]
        ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(float(matrix.max()), 1e-9), aspect="auto")
        for i, j in gold:
            ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.5))
        best = matrix.argmax(axis=1)
        ax.scatter(best, range(n_fr), marker=".", color="red", s=12)
        ax.set_xticks(range(n_en), labels=explained.english, rotation=90, fontsize=7)
        ax.set_yticks(range(n_fr), labels=explained.french if ax is panels[0] else [""] * n_fr, fontsize=7)
        ax.set_title(method, fontsize=8)
    figure.suptitle("white boxes: gold alignment; red dots: each French word's highest-scoring English word", fontsize=8)
    return _save(figure, path)
