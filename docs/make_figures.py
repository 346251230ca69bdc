"""Draw every figure of the chapters into docs/figures/, from the project's own code.

    python docs/make_figures.py                        # all figures, into docs/figures/
    python docs/make_figures.py --only 04-i-am-good    # one figure (name without .png)
    python docs/make_figures.py --out /tmp/figures     # somewhere else

Each figure is one function below, registered in FIGURES under its file name; it draws the
PNG and returns the numbers it plots, which main() writes into data.json beside the PNGs
(one entry per figure, floats to 12 significant digits, a blank cell as null). Every random
number comes from a fixed seed, so running the script twice writes the same bytes.

tests/test_docs.py redraws every figure and compares those numbers with the committed
docs/figures/data.json, within a tolerance justified by each computation, rather than the
pixels (another CPU or BLAS rounds differently, and text renders differently with another
matplotlib or FreeType). It also checks that each PNG opens at its committed size, that the
figures on disk are exactly the ones listed here, and that each chapter names this command
beneath its figures.
"""

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.patches import FancyBboxPatch  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from minitransformer.batching import pad_sequences  # noqa: E402
from minitransformer.config import ModelConfig  # noqa: E402
from minitransformer.configs import TATOEBA, TOY  # noqa: E402
from minitransformer.layers.attention import attention_forward, masked_softmax  # noqa: E402
from minitransformer.decode import DecoderCache, decode_step  # noqa: E402
from minitransformer.layers.blocked_attention import blocked_attention_forward  # noqa: E402
from minitransformer.layers.multihead import merge_heads, split_heads  # noqa: E402
from minitransformer.layers.positional import sinusoidal_table  # noqa: E402
from minitransformer.layers.residual import residual_forward  # noqa: E402
from minitransformer.backends.numpy_backend import kernels as numpy_kernels  # noqa: E402
from minitransformer.model import causal_mask, local_mask, make_model, padding_mask  # noqa: E402
from minitransformer.optim import Adam, clip_grad_norm, noam_lr  # noqa: E402
from minitransformer.trace import record_trace  # noqa: E402
from minitransformer.viz import axis_labels, select  # noqa: E402
from minitransformer.zoo import attention_weights  # noqa: E402
from minitransformer.zoo import vector  # noqa: E402
from minitransformer.zoo.kernel_regression import (  # noqa: E402
    kernel_regression_backward,
    predict,
    synthetic_waist_weight,
)

FIGURES_DIR = Path(__file__).resolve().parent / "figures"
DATA_FILE = "data.json"  # beside the PNGs: {figure name: the numbers it plots}
SIGNIFICANT_DIGITS = 12  # enough for the test's tightest tolerance (1e-9 relative)
# a white background and a fixed size per figure: the same picture on every machine
STYLE = {"figure.facecolor": "white", "savefig.facecolor": "white", "font.size": 10}


def learn_bandwidth(waist, weight, bandwidth=30.0, steps=100, lr=0.4):
    """Gradient descent on log h with the leave-one-out error, as the zoo's demo does.

    waist (S,), weight (S,) -> the learned bandwidth h (cm).
    """
    leave_one_out = ~np.eye(len(waist), dtype=bool)[None]  # (1, S, S): nobody sees themselves
    log_bandwidth = math.log(bandwidth)
    for _ in range(steps):
        bandwidth = math.exp(log_bandwidth)
        prediction, cache = predict(waist, waist, weight, bandwidth, leave_one_out)  # (S,)
        residual = prediction - weight  # (S,)
        loss = float(np.mean(residual**2))
        dprediction = (2.0 / len(waist)) * residual  # (S,)
        *_, dbandwidth = kernel_regression_backward(dprediction[None, :, None], cache)
        # descend on log L in log h: the step is a fraction of log h, whatever the units
        log_bandwidth -= lr * float(dbandwidth) * bandwidth / loss
    return math.exp(log_bandwidth)


def figure_nadaraya_watson(path):
    """Chapter 1: the Nadaraya–Watson fit with a narrow, a learned and a wide bandwidth,
    and the weights each gives the training people when the query is a 90 cm waist."""
    rng = np.random.default_rng(0)
    waist, weight, true_weight = synthetic_waist_weight(150, rng)  # (S,), (S,)
    learned = learn_bandwidth(waist, weight)
    bandwidths = [(0.3, "narrow", "tab:red"), (learned, "learned", "tab:green"), (15.0, "wide", "tab:purple")]
    grid = np.linspace(60, 120, 400)  # (T,)
    query = 90.0
    data = {"waist": waist, "weight": weight, "grid": grid, "bandwidths": {label: h for h, label, _ in bandwidths},
            "fits": {}, "weights_at_query": {}}  # fmt: skip

    figure, (fit_axes, weight_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    fit_axes.scatter(waist, weight, s=9, color="0.6", label="training people (synthetic)")
    fit_axes.plot(grid, true_weight(grid), "k--", lw=1, label="noise-free curve")
    for bandwidth, label, color in bandwidths:
        prediction, _ = predict(grid, waist, weight, bandwidth)  # (T,)
        data["fits"][label] = prediction
        fit_axes.plot(grid, prediction, color=color, lw=1.4, label=f"h = {bandwidth:.2g} cm ({label})")
    fit_axes.axvline(query, color="0.3", lw=0.8, ls=":")
    fit_axes.set_xlabel("waist (cm): the query")
    fit_axes.set_ylabel("weight (kg): the value")
    fit_axes.set_title("f(x) = Σ softmax(−(x − xₛ)² / 2h²) · yₛ")
    fit_axes.legend(fontsize=8, loc="upper left")

    for bandwidth, label, color in bandwidths:
        _, cache = predict(np.array([query]), waist, weight, bandwidth)
        alphas = attention_weights(cache[-1])[0, 0]  # (S,)
        data["weights_at_query"][label] = alphas
        order = np.argsort(waist)
        weight_axes.plot(waist[order], alphas[order], color=color, lw=1.2, marker=".", ms=3,
                         label=f"h = {bandwidth:.2g} cm ({label})")  # fmt: skip
    weight_axes.set_xlim(80, 100)
    weight_axes.set_yscale("log")
    weight_axes.set_ylim(1e-4, 1.2)
    weight_axes.set_xlabel("waist of the training person (cm): the key")
    weight_axes.set_ylabel("attention weight α (log scale)")
    weight_axes.set_title(f"the weights for the query x = {query:g} cm (each curve sums to 1)")
    weight_axes.legend(fontsize=8, loc="lower right")
    save(figure, path)
    return data


def figure_softmax_scaling(path):
    """Chapter 2: the same 8 dot-product scores of d_k = 64 unit-variance vectors, through
    a softmax unscaled and divided by √64 = 8; and how peaked the softmax gets with width."""
    rng = np.random.default_rng(2)
    width, n_keys = 64, 8
    query = rng.standard_normal(width)  # (Dh,)
    keys = rng.standard_normal((n_keys, width))  # (S, Dh)
    scores = keys @ query  # (S,)

    figure, (scores_axes, weights_axes, width_axes) = plt.subplots(1, 3, figsize=(13, 3.8))
    positions = np.arange(n_keys)
    scores_axes.bar(positions - 0.2, scores, 0.4, label="q·k", color="tab:red")
    scores_axes.bar(positions + 0.2, scores / math.sqrt(width), 0.4, label="q·k / √64", color="tab:blue")
    scores_axes.axhline(0, color="k", lw=0.6)
    scores_axes.set_xlabel("key")
    scores_axes.set_title("scores, d_k = 64")
    scores_axes.legend(fontsize=8)

    unscaled = masked_softmax(scores, None)  # (S,)
    scaled = masked_softmax(scores / math.sqrt(width), None)  # (S,)
    weights_axes.bar(positions - 0.2, unscaled, 0.4, label="softmax(q·k)", color="tab:red")
    weights_axes.bar(positions + 0.2, scaled, 0.4, label="softmax(q·k / √64)", color="tab:blue")
    weights_axes.set_ylim(0, 1.05)
    weights_axes.set_xlabel("key")
    weights_axes.set_title("attention weights")
    weights_axes.legend(fontsize=8)

    widths = [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    trials = 2000
    data = {"scores": scores, "softmax_unscaled": unscaled, "softmax_scaled": scaled, "widths": widths,
            "mean_largest_weight": {}}  # fmt: skip
    for label, scale_of, color in (("unscaled", lambda d: 1.0, "tab:red"),
                                   ("scaled by 1/√d_k", lambda d: 1 / math.sqrt(d), "tab:blue")):  # fmt: skip
        largest = []
        for d in widths:
            q = rng.standard_normal((trials, 1, d))  # (trials, 1, Dh)
            k = rng.standard_normal((trials, n_keys, d))  # (trials, S, Dh)
            weights = masked_softmax((q @ k.swapaxes(-1, -2)) * scale_of(d), None)  # (trials, 1, S)
            largest.append(weights.max(axis=-1).mean())
        data["mean_largest_weight"][label] = largest
        width_axes.plot(widths, largest, "o-", color=color, label=label)
    width_axes.axhline(1 / n_keys, color="0.4", ls=":", lw=1, label="uniform, 1/S")
    width_axes.set_xscale("log", base=2)
    width_axes.set_ylim(0, 1.05)
    width_axes.set_xlabel("d_k")
    width_axes.set_ylabel("mean of the largest weight")
    width_axes.set_title(f"peakedness vs width (S = {n_keys} keys)")
    width_axes.legend(fontsize=8)
    save(figure, path)
    return data


def figure_vector_attention(path):
    """Chapter 3: the weights of one query after training on the left/self/right stencil,
    one weight per key (scalar, G = 1) against one weight per key and channel (G = C = 3)."""
    settings = SimpleNamespace(steps=150, batch=16, length=10, hidden=16, lr=0.03)
    queries, keys, values, _ = vector.stencil_batch(1, settings.length, np.random.default_rng(0))
    middle = queries.shape[1] // 2
    query_position = int(queries[0, middle, 0])

    figure, axes_pair = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    channel_names = ["c = 0 (wants left)", "c = 1 (wants self)", "c = 2 (wants right)"]
    data = {"query_position": query_position, "weights": {}}  # (S, G) per panel
    for axes, n_groups, title in ((axes_pair[0], 1, "scalar: one weight per key"),
                                  (axes_pair[1], 3, "vector: one weight per key and channel")):  # fmt: skip
        _, params = vector.train(n_groups, settings, np.random.default_rng(0))
        _, cache = vector.vector_attention_forward(queries, keys, values, **params)
        weights = vector.vector_attention_weights(cache)[0, middle]  # (S, G)
        data["weights"][title] = weights
        positions = np.arange(settings.length)
        for channel in range(3):
            group = channel * n_groups // 3
            offset = (channel - 1) * 0.27
            axes.bar(positions + offset, weights[:, group], 0.27, label=channel_names[channel])
        axes.axvline(query_position, color="0.3", ls=":", lw=0.8)
        axes.set_xticks(positions)
        axes.set_xlabel(f"key position (the query is position {query_position})")
        axes.set_title(title)
    axes_pair[0].set_ylabel("attention weight α")
    axes_pair[1].legend(fontsize=8)
    save(figure, path)
    return data


def figure_local_vs_global(path):
    """Chapter 3: which keys each query may see, globally, in a band of half-width 1, and
    the band combined with the decoder's causal mask."""
    length, window = 8, 1  # the sizes of the chapter's code block
    masks = [
        ("global (the paper)", np.ones((length, length), dtype=bool)),
        (f"local, |t − s| ≤ {window}", local_mask(length, length, window)[0, 0]),
        ("causal (decoder)", causal_mask(length)[0, 0]),
        (f"causal and local, w = {window}", (causal_mask(length) & local_mask(length, length, window))[0, 0]),
    ]
    figure, axes_row = plt.subplots(1, 4, figsize=(14, 3.8))
    for axes, (title, mask) in zip(axes_row, masks):
        draw_mask(axes, mask, title)
        axes.set_xlabel(f"key s  ({int(mask.sum())} of {mask.size} pairs scored)")
    axes_row[0].set_ylabel("query t")
    save(figure, path)
    return {"masks": {title: mask for title, mask in masks}}


def figure_i_am_good(path):
    """Chapter 4: the 3×3 matrices of self-attention on "I am good" — scores Q·Kᵀ, the
    scores divided by √64 = 8, and the softmax rows."""
    tokens = ["I", "am", "good"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 512))  # (T, D): stand-ins for the embeddings
    w_query, w_key, w_value = (rng.standard_normal((512, 64)) / math.sqrt(512) for _ in range(3))  # (D, Dh)
    queries, keys, values = x @ w_query, x @ w_key, x @ w_value  # (T, Dh)
    scores = queries @ keys.T  # (T, T)
    scaled = scores / math.sqrt(64)  # (T, T)
    _, probs = attention_forward(queries[None, None], keys[None, None], values[None, None])  # (1, 1, T, T)
    panels = [("scores Q·Kᵀ", scores, "RdBu_r"), ("divided by √64 = 8", scaled, "RdBu_r"),
              ("softmax, row by row", probs[0, 0], "Blues")]  # fmt: skip
    figure, axes_row = plt.subplots(1, 3, figsize=(12, 3.8))
    for axes, (title, matrix, colormap) in zip(axes_row, panels):
        limit = np.abs(matrix).max()
        low = 0.0 if colormap == "Blues" else -limit
        axes.imshow(matrix, cmap=colormap, vmin=low, vmax=limit)
        for (row, column), value in np.ndenumerate(matrix):
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=10)
        axes.set_xticks(range(3), tokens)
        axes.set_yticks(range(3), tokens)
        axes.set_xlabel("key")
        axes.set_title(title)
    axes_row[0].set_ylabel("query")
    save(figure, path)
    return {"tokens": tokens, "panels": {title: matrix for title, matrix, _ in panels}}


def figure_positional_encoding(path):
    """Chapter 6: the sinusoidal table, as a heat map and as a few of its channels."""
    table = sinusoidal_table(64, 64, np.float64)  # (P, D)
    figure, (map_axes, line_axes) = plt.subplots(1, 2, figsize=(12, 4))
    image = map_axes.imshow(table, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    map_axes.set_xlabel("channel (even: sin, odd: cos)")
    map_axes.set_ylabel("position")
    map_axes.set_title("PE (64 positions × D = 64)")
    figure.colorbar(image, ax=map_axes)
    positions = np.arange(64)
    for channel in (0, 2, 8, 20):
        frequency = 10000.0 ** (-channel / 64)
        line_axes.plot(positions, table[:, channel], lw=1.3,
                       label=f"channel {channel}: sin(pos · {frequency:.3g})")  # fmt: skip
    line_axes.set_xlabel("position")
    line_axes.set_title("a few channels: each pair turns at its own speed")
    line_axes.legend(fontsize=8, loc="lower left")
    save(figure, path)
    return {"table": table}  # the lines are its channels 0, 2, 8 and 20


def figure_masks(path):
    """Chapter 6: a padding mask for a batch of two source sentences, the causal mask, and
    the decoder's self-attention mask, which is both."""
    src = np.array([[7, 8, 9, 10, 11], [7, 12, 9, 0, 0]])  # (B, S): the second ends in two pads
    tgt_in = np.array([[2, 13, 14, 15, 16], [2, 13, 17, 0, 0]])  # (B, T)
    length = tgt_in.shape[1]
    source_mask = np.broadcast_to(padding_mask(src, 0), (2, 1, length, 5))  # (B, 1, T, S)
    decoder_mask = causal_mask(length) & padding_mask(tgt_in, 0)  # (B, 1, T, T)
    panels = [
        ("padding, sentence 2 (3 words + 2 pads)", source_mask[1, 0], "key s (source)"),
        ("causal", causal_mask(length)[0, 0], "key s (target)"),
        ("causal and padding, sentence 2", decoder_mask[1, 0], "key s (target)"),
    ]
    figure, axes_row = plt.subplots(1, 3, figsize=(11.5, 4.3))
    for axes, (title, mask, xlabel) in zip(axes_row, panels):
        draw_mask(axes, mask, title)
        axes.set_xlabel(xlabel)
    axes_row[0].set_ylabel("query t")
    save(figure, path)
    return {"masks": {title: mask for title, mask, _ in panels}}


def figure_blocked_attention(path):
    """Chapter 8: the tiles of a causal 16 × 16 attention matrix in blocks of 4 (computed
    whole, computed with some entries masked, or skipped by the compiled kernel); and the
    online softmax of the chapter's row of 10 scores in blocks of 4: the weights its running
    max m and sum l stand for after each block of keys, which the next block with a larger
    score rescales."""
    length, block = 16, 4
    mask = causal_mask(length)[0, 0]  # (T, S)
    n_blocks = length // block
    figure, (tile_axes, row_axes) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.45]})
    tile_axes.imshow(mask, cmap="Greys", vmin=-0.3, vmax=1.2)
    counts = {"skipped": 0, "partly masked": 0, "whole": 0}
    tile_kinds = [[None] * n_blocks for _ in range(n_blocks)]  # (query block, key block)
    styles = {"skipped": ("tab:red", "skipped"), "partly masked": ("tab:orange", "part"),
              "whole": ("tab:green", "whole")}  # fmt: skip
    for row_block in range(n_blocks):
        for column_block in range(n_blocks):
            tile = mask[row_block * block : (row_block + 1) * block, column_block * block : (column_block + 1) * block]
            kind = "skipped" if not tile.any() else ("whole" if tile.all() else "partly masked")
            counts[kind] += 1
            tile_kinds[row_block][column_block] = kind
            color, text = styles[kind]
            corner = (column_block * block - 0.5, row_block * block - 0.5)
            tile_axes.add_patch(plt.Rectangle(corner, block, block, fill=False, edgecolor=color, lw=2.2,
                                              hatch="//" if kind == "skipped" else None))  # fmt: skip
            # a diagonal tile's label goes in its lower-left half, where the keys are allowed
            where = (0.35, 0.7) if kind == "partly masked" else (0.5, 0.5)
            tile_axes.text(corner[0] + where[0] * block, corner[1] + where[1] * block, text, ha="center",
                           va="center", fontsize=8, color=color if kind == "skipped" else "white",
                           fontweight="bold")  # fmt: skip
    tile_axes.set_xticks(range(0, length, block))
    tile_axes.set_yticks(range(0, length, block))
    tile_axes.set_xlabel("key s (a column of tiles = one key block)")
    tile_axes.set_ylabel("query t (a row of tiles = one query block)")
    tile_axes.set_title(f"causal mask, T = S = {length}, blocks of {block}: {counts['whole']} whole, "
                        f"{counts['partly masked']} in part, {counts['skipped']} skipped", fontsize=10)  # fmt: skip

    # the chapter's code block: one row of 10 scores q·k/√Dh, in key blocks of 4 (4, 4, 2).
    # With Dh = 1 and q = 1 the keys are the scores themselves, so the blocked core sees them.
    scores = np.array([0.5, -1.0, 1.2, 0.3, 2.0, -0.4, 0.1, 1.1, 3.1, -2.0])  # (S,)
    n_keys, n_row_blocks = len(scores), math.ceil(len(scores) / block)
    q = np.ones((1, 1, 1, 1))  # (B, H, T=1, Dh=1)
    k = scores.reshape(1, 1, n_keys, 1)  # (B, H, S, Dh)
    v = np.random.default_rng(1).standard_normal((1, 1, n_keys, 1))  # (B, H, S, Dh): not plotted
    implied = np.full((n_row_blocks, n_keys), np.nan)  # (blocks seen, S): blank where not seen yet
    labels, running_maxima, running_sums = [], [], []
    for seen in range(1, n_row_blocks + 1):
        end = min(seen * block, n_keys)
        # the blocked core over the keys seen so far keeps lse = m + log l for this row
        _, logsumexp = blocked_attention_forward(q, k[:, :, :end], v[:, :, :end], block_size=block)
        running_max = scores[:end].max()
        running_sum = math.exp(float(logsumexp[0, 0, 0]) - running_max)
        implied[seen - 1, :end] = np.exp(scores[:end] - logsumexp[0, 0, 0])
        labels.append(f"after keys 0–{end - 1}:  m = {running_max:.2f},  l = {running_sum:.3f}")
        running_maxima.append(running_max)
        running_sums.append(running_sum)
    final = masked_softmax(scores, None)  # (S,): the plain softmax of the whole row
    assert np.allclose(implied[-1], final)
    row_axes.imshow(np.ma.masked_invalid(implied), cmap="Blues", vmin=0, vmax=np.nanmax(implied) * 1.15, aspect="auto")
    for (row, column), value in np.ndenumerate(implied):
        if not np.isnan(value):
            row_axes.text(column, row, f"{value:.2f}".lstrip("0"), ha="center", va="center", fontsize=7.5)
    for boundary in range(block, n_keys, block):
        row_axes.axvline(boundary - 0.5, color="0.3", lw=1)
    row_axes.set_yticks(range(n_row_blocks), labels, fontsize=8.5)
    row_axes.set_xticks(range(n_keys), [f"{score:.1f}" for score in scores], fontsize=8)
    row_axes.set_xlabel("the row's 10 keys (the chapter's code block), labelled with their scores q·k/√Dh")
    row_axes.set_title("one row's online softmax: exp(e − m) / l over the keys seen so far\n"
                       "(the last row is the plain softmax of the whole row)", fontsize=10)  # fmt: skip
    save(figure, path)
    return {"mask": mask, "tile_kinds": tile_kinds, "counts": counts, "scores": scores, "implied_weights": implied,
            "running_max": running_maxima, "running_sum": running_sums}  # fmt: skip


def figure_learning_rate(path):
    """Chapter 9: the learning rate of the toy and Tatoeba configs, warmup then 1/√step,
    and the toy schedule's two branches on logarithmic axes."""
    steps = np.arange(1, 3001)
    figure, (linear_axes, log_axes) = plt.subplots(1, 2, figsize=(12, 4.2))
    data = {"steps": steps, "rates": {}, "peaks": {}}
    for config, color in ((TOY, "tab:blue"), (TATOEBA, "tab:orange")):
        rates = [noam_lr(int(step), config.model.d_model, config.warmup_steps, config.lr_factor) for step in steps]
        data["rates"][config.name] = rates
        data["peaks"][config.name] = [config.warmup_steps, config.peak_lr()]
        linear_axes.plot(steps, rates, color=color, lw=1.6,
                         label=f"{config.name}: D = {config.model.d_model}, warmup = {config.warmup_steps}, "
                               f"factor = {config.lr_factor:g}")  # fmt: skip
        linear_axes.plot([config.warmup_steps], [config.peak_lr()], "o", color=color)
        linear_axes.annotate(f"peak {config.peak_lr():.2e} at step {config.warmup_steps}",
                             (config.warmup_steps, config.peak_lr()), xytext=(12, 4),
                             textcoords="offset points", fontsize=8, color=color)  # fmt: skip
    linear_axes.set_xlabel("step")
    linear_axes.set_ylabel("learning rate")
    linear_axes.set_ylim(0, TOY.peak_lr() * 1.4)  # room for the legend above the peak
    linear_axes.set_title("lr = factor · D^(−½) · min(step^(−½), step · warmup^(−3/2))")
    linear_axes.legend(fontsize=8, loc="upper right")

    steps = np.unique(np.logspace(0, 5, 400).astype(int))
    scale = TOY.lr_factor * TOY.model.d_model**-0.5
    rates = [noam_lr(int(step), TOY.model.d_model, TOY.warmup_steps, TOY.lr_factor) for step in steps]
    log_axes.loglog(steps, rates, color="tab:blue", lw=2.5, alpha=0.6, label="toy schedule (the minimum)")
    log_axes.loglog(steps, scale * steps * TOY.warmup_steps**-1.5, "k--", lw=1, label="warmup branch, ∝ step")
    log_axes.loglog(steps, scale * steps**-0.5, "k:", lw=1.2, label="decay branch, ∝ 1/√step")
    log_axes.axvline(TOY.warmup_steps, color="0.5", lw=0.8)
    log_axes.set_ylim(1e-6, 1e-1)
    log_axes.set_xlabel("step (log scale)")
    log_axes.set_title(f"the branches cross at step = warmup = {TOY.warmup_steps}")
    log_axes.legend(fontsize=8, loc="lower center")
    save(figure, path)
    data["log_steps"], data["log_rates"] = steps, rates  # the right panel; its branches follow from them
    return data


# Chapter 10's tiny translator: four adjectives, four nouns and four verbs, every French
# noun masculine and every adjective placed after it, so that each French sentence is
# correct; the same sentences and recipe as the chapter's code
TINY_ADJECTIVES = {"black": "noir", "white": "blanc", "green": "vert", "red": "rouge"}
TINY_NOUNS = {"cat": "chat", "dog": "chien", "horse": "cheval", "rabbit": "lapin"}
TINY_VERBS = {"sleeps": "dort", "eats": "mange", "runs": "court", "jumps": "saute"}
TINY_HELD_OUT = "the black cat sleeps ."


class WordVocabulary:
    """Whole words to ids and back, with the project's special ids (pad 0, unk 1, <s> 2,
    </s> 3); what record_trace needs of a tokenizer."""

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, source_sentences, target_sentences):
        specials = ["<pad>", "<unk>", "<s>", "</s>"]
        self.source_words = specials + sorted({word for text in source_sentences for word in text.split()})
        self.target_words = specials + sorted({word for text in target_sentences for word in text.split()})

    def encode_src(self, text):
        return [self.source_words.index(word) for word in text.split()]

    def encode_tgt(self, text):
        return [self.target_words.index(word) for word in text.split()]

    def src_pieces(self, ids):
        return [self.source_words[i] for i in ids]

    def tgt_pieces(self, ids):
        return [self.target_words[i] for i in ids]

    def decode_tgt(self, ids):
        return " ".join(self.target_words[i] for i in ids if i > self.eos_id)


def train_tiny_translator():
    """-> (model, vocabulary, losses): 200 Adam steps on the 63 sentences that are not
    TINY_HELD_OUT, and the loss of each step's batch."""
    pairs = [(f"the {adjective} {noun} {verb} .",
              f"le {TINY_NOUNS[noun]} {TINY_ADJECTIVES[adjective]} {TINY_VERBS[verb]} .")
             for adjective, noun, verb in itertools.product(TINY_ADJECTIVES, TINY_NOUNS, TINY_VERBS)]  # fmt: skip
    vocabulary = WordVocabulary([english for english, _ in pairs], [french for _, french in pairs])
    train = [(english, french) for english, french in pairs if english != TINY_HELD_OUT]
    src = pad_sequences([vocabulary.encode_src(english) for english, _ in train], 0)  # (pairs, S)
    tgt_in = pad_sequences([[2] + vocabulary.encode_tgt(french) for _, french in train], 0)  # (pairs, T)
    tgt_out = pad_sequences([vocabulary.encode_tgt(french) + [3] for _, french in train], 0)  # (pairs, T)
    config = ModelConfig(src_vocab_size=len(vocabulary.source_words), tgt_vocab_size=len(vocabulary.target_words),
                         d_model=32, n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0,
                         max_len=16, dtype="float64")  # fmt: skip
    model = make_model(config, seed=0, backend="numpy")
    optimizer = Adam(model.params, beta1=0.9, beta2=0.98, eps=1e-9)
    rng = np.random.default_rng(0)
    losses = []
    for step in range(1, 201):
        rows = rng.choice(len(train), size=16, replace=False)  # a batch of 16 pairs
        losses.append(model.loss_and_grads(src[rows], tgt_in[rows], tgt_out[rows], smoothing=0.1))
        clip_grad_norm(model.grads, 1.0)
        optimizer.step(model.params, model.grads, noam_lr(step, d_model=32, warmup=30))
    return model, vocabulary, losses


def figure_attention_vs_saliency(path):
    """Chapter 10: the tiny translator on the sentence it never saw, "the black cat sleeps .":
    the encoder's self-attention, the cross-attention and the gradient × input saliency,
    each the mean of its 2 heads where it has heads."""
    model, vocabulary, losses = train_tiny_translator()
    trace = record_trace(model, vocabulary, vocabulary.encode_src(TINY_HELD_OUT))
    panels = [("encoder", "encoder self-attention"), ("cross", "cross-attention (decoder → source)"),
              ("saliency", "gradient × input saliency")]  # fmt: skip
    figure, axes_row = plt.subplots(1, 3, figsize=(13, 4.3))
    data = {"losses": losses, "panels": {}}
    for axes, (kind, title) in zip(axes_row, panels):
        matrix = select(trace, kind)  # (rows, columns): layer 1, the heads' mean
        rows, columns = axis_labels(trace, kind)
        data["panels"][kind] = {"rows": rows, "columns": columns, "weights": matrix}
        axes.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
        for (row, column), value in np.ndenumerate(matrix):
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="black" if value > 0.6 else "white")  # fmt: skip
        axes.set_xticks(range(len(columns)), columns)
        axes.set_yticks(range(len(rows)), rows)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("source word (key)" if kind != "saliency" else "source word")
        axes.set_ylabel("source word (query)" if kind == "encoder" else "output word (query: the step)")
    save(figure, path)
    return data


# --- diagrams: boxes and arrows, each drawn from what the code computes --------------------


def draw_box(axes, center, size, text, color, fontsize=9):
    """A rounded box centred at ``center`` = (x, y) of ``size`` = (width, height), with text."""
    (x, y), (width, height) = center, size
    axes.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.02,rounding_size=0.08",
                                  facecolor=color, edgecolor="0.25", lw=1))  # fmt: skip
    axes.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def draw_arrow(axes, start, end, text=None, color="0.2", style="-|>", connection="arc3", fontsize=8):
    axes.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle=style, color=color, lw=1.2,
                                                           connectionstyle=connection, shrinkA=2, shrinkB=2))  # fmt: skip
    if text:
        axes.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, text, fontsize=fontsize, color=color,
                  va="center")  # fmt: skip


def diagram_axes(axes, xlim, ylim, title):
    axes.set_xlim(*xlim)
    axes.set_ylim(*ylim)
    axes.set_aspect("equal")
    axes.axis("off")
    axes.set_title(title, fontsize=10)


def sublayers_of(params, stack, layer=0):
    """The sublayers of one layer of a stack, in the order the forward runs them, read from
    the model's parameter names (self_attn, cross_attn, ffn) and their norms."""
    prefix = f"{stack}.layers.{layer}."
    names = {key[len(prefix):].split(".")[0] for key in params if key.startswith(prefix)}
    order = [name for name in ("self_attn", "cross_attn", "ffn") if name in names]
    norms = sorted(name for name in names if name.startswith("norm"))
    return order, norms


def figure_encoder_decoder(path):
    """Chapter 6: the whole encoder–decoder, each stack N layers of residual sublayers, and
    the two placements of the LayerNorm; the structure is read from models built by
    make_model with the paper's, the toy and the Tatoeba configs."""
    structures = {}
    for name, n_layers, pre_norm in (("paper", 6, False), ("toy", TOY.model.n_encoder_layers, TOY.model.pre_norm),
                                     ("tatoeba", TATOEBA.model.n_encoder_layers, TATOEBA.model.pre_norm)):  # fmt: skip
        config = ModelConfig(src_vocab_size=8, tgt_vocab_size=8, d_model=8, n_heads=2, d_ff=16, n_encoder_layers=n_layers,
                             n_decoder_layers=n_layers, pre_norm=pre_norm, dtype="float64")  # fmt: skip
        params = make_model(config, seed=0, backend="numpy").params
        encoder, encoder_norms = sublayers_of(params, "encoder")
        decoder, decoder_norms = sublayers_of(params, "decoder")
        structures[name] = {"N": n_layers, "pre_norm": pre_norm, "encoder": encoder, "decoder": decoder,
                            "norms_per_layer": [len(encoder_norms), len(decoder_norms)],
                            "final_norm": "encoder.norm.gamma" in params}  # fmt: skip
    # the two placements, checked on numbers: post-norm LayerNorm(x + F(x)), pre-norm x + F(LayerNorm(x))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 8))  # (B, T, D)
    weight = rng.standard_normal((8, 8)) / math.sqrt(8)  # (D, D): a stand-in sublayer F

    def sublayer(h):
        return h @ weight, None  # (B, T, D)

    norm = {"gamma": np.ones(8), "beta": np.zeros(8)}
    placements = {}
    for pre_norm, formula in ((False, lambda x: layernorm(x + x @ weight)), (True, lambda x: x + layernorm(x) @ weight)):
        y, _ = residual_forward(x, sublayer, norm, pre_norm, 0.0, None, 1e-5, numpy_kernels)
        placements["pre-norm" if pre_norm else "post-norm"] = bool(np.allclose(y, formula(x), rtol=0, atol=1e-12))

    figure, (model_axes, norm_axes) = plt.subplots(1, 2, figsize=(13, 7.2), gridspec_kw={"width_ratios": [1.7, 1]})
    diagram_axes(model_axes, (-1.2, 12.4), (0, 13.2), "the encoder–decoder (post-norm, as in the paper)")
    labels = {"self_attn": "multi-head self-attention", "cross_attn": "cross-attention\n(queries: decoder; K, V: memory)",
              "ffn": "feed-forward\nmax(0, x·W₁ + b₁)·W₂ + b₂"}  # fmt: skip
    colors = {"self_attn": "#f6d28b", "cross_attn": "#f3b6a0", "ffn": "#b9d7f0", "norm": "#e3e3e3"}
    paper = structures["paper"]
    columns = {"encoder": 2.6, "decoder": 8.6}
    tops = {}
    for stack, x_center in columns.items():
        y = 1.4
        first = "inputs (English ids)" if stack == "encoder" else "outputs so far, shifted right (<s> y₀ …)"
        draw_box(model_axes, (x_center, 0.45), (3.6, 0.55), first, "white", fontsize=8)
        draw_box(model_axes, (x_center, y), (3.6, 0.6), "embedding · √D  +  PE", "#d9ead3", fontsize=8)
        draw_arrow(model_axes, (x_center, 0.75), (x_center, y - 0.3))
        bottom = y + 0.5
        for sub in paper[stack]:
            label = labels[sub].replace("self-attention", "self-attention, causal") if (stack, sub) == ("decoder", "self_attn") else labels[sub]
            y += 1.25
            draw_box(model_axes, (x_center, y), (3.4, 0.7), label, colors[sub], fontsize=7.5)
            draw_arrow(model_axes, (x_center, y - 0.9), (x_center, y - 0.35))
            y += 0.85
            draw_box(model_axes, (x_center, y), (3.4, 0.45), "add & LayerNorm", colors["norm"], fontsize=7.5)
            draw_arrow(model_axes, (x_center, y - 0.5), (x_center, y - 0.22))
            # the residual: around the sublayer, into the add
            side = x_center - 1.95
            model_axes.plot([x_center - 0.2, side, side], [y - 1.5, y - 1.5, y], color="tab:green", lw=1.3)
            draw_arrow(model_axes, (side, y), (x_center - 1.7, y), color="tab:green")
            if sub == "cross_attn":
                tops["cross"] = (x_center - 1.7, y - 0.85)
        model_axes.add_patch(plt.Rectangle((x_center - 2.15, bottom), 4.3, y - bottom + 0.45, fill=False, ls="--",
                                           edgecolor="0.4", lw=1))  # fmt: skip
        outside = x_center - 2.3 if stack == "encoder" else x_center + 2.3
        model_axes.text(outside, (bottom + y) / 2, f"N = {paper['N']}\n(toy {structures['toy']['N']},\n"
                        f"Tatoeba {structures['tatoeba']['N']})", fontsize=8, va="center",
                        ha="right" if stack == "encoder" else "left")  # fmt: skip
        tops[stack] = y
    # memory into every decoder layer's cross-attention; the output layer on top of the decoder
    draw_box(model_axes, (columns["encoder"], tops["encoder"] + 1.0), (2.6, 0.5), "memory (B, S, D)", "white", fontsize=8)
    draw_arrow(model_axes, (columns["encoder"], tops["encoder"] + 0.25), (columns["encoder"], tops["encoder"] + 0.75))
    draw_arrow(model_axes, (columns["encoder"] + 1.3, tops["encoder"] + 1.0), tops["cross"], color="tab:red",
               connection="arc3,rad=-0.25")
    model_axes.text(columns["encoder"] - 1.3, tops["encoder"] + 1.75, "the memory goes to the cross-attention\nof every decoder layer",
                    fontsize=7.5, color="tab:red")  # fmt: skip
    y = tops["decoder"] + 0.95
    draw_box(model_axes, (columns["decoder"], y), (3.0, 0.5), "linear (tied to the embedding)", "#d9ead3", fontsize=8)
    draw_arrow(model_axes, (columns["decoder"], tops["decoder"] + 0.25), (columns["decoder"], y - 0.25))
    draw_box(model_axes, (columns["decoder"], y + 0.85), (3.0, 0.5), "softmax: p(y_t | y_<t, x)", "white", fontsize=8)
    draw_arrow(model_axes, (columns["decoder"], y + 0.25), (columns["decoder"], y + 0.6))

    diagram_axes(norm_axes, (0, 8), (-1.0, 9.6), "one sublayer F, two placements of the LayerNorm")
    for x_center, title, order in ((2.0, "post-norm (the paper, toy)\nx ← LayerNorm(x + F(x))", ("F", "add", "LayerNorm")),
                                   (6.0, "pre-norm (Tatoeba)\nx ← x + F(LayerNorm(x))", ("LayerNorm", "F", "add"))):  # fmt: skip
        norm_axes.text(x_center, 8.9, title, ha="center", fontsize=8.5)
        draw_box(norm_axes, (x_center, 0.6), (2.4, 0.5), "x", "white")
        y_of = {}
        for step, name in enumerate(order):
            y = 2.1 + 1.8 * step
            y_of[name] = y
            color = colors["norm"] if name == "LayerNorm" else ("#f6d28b" if name == "F" else "white")
            draw_box(norm_axes, (x_center, y), (2.4, 0.6), {"add": "+"}.get(name, name), color)
            draw_arrow(norm_axes, (x_center, y - 1.5), (x_center, y - 0.3))
        draw_box(norm_axes, (x_center, 7.7), (2.4, 0.5), "out", "white")
        draw_arrow(norm_axes, (x_center, y_of[order[-1]] + 0.3), (x_center, 7.45))
        side = x_center - 1.6
        norm_axes.plot([x_center - 0.3, side, side], [0.95, 0.95, y_of["add"]], color="tab:green", lw=1.3)
        draw_arrow(norm_axes, (side, y_of["add"]), (x_center - 1.2, y_of["add"]), color="tab:green")
    norm_axes.text(4.0, -0.6, "green: the residual path. Pre-norm leaves the stream unnormalized,\n"
                   "so it adds one LayerNorm after each stack's last layer.", ha="center", fontsize=8)  # fmt: skip
    save(figure, path)
    return {"models": structures, "residual_forward_matches_the_formula": placements}


def layernorm(x, eps=1e-5):
    """LayerNorm with γ = 1, β = 0 over the last axis: the formula the placements are checked against."""
    return (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(x.var(axis=-1, keepdims=True) + eps)


def figure_qkv_shapes(path):
    """Chapter 4: the shapes through one head, T = 3 queries reading S = 5 keys with
    D = 512 and Dh = 64 (self-attention is the case X_kv = X_q, S = T); every shape is
    the one the project's attention core returns."""
    n_queries, n_keys, d_model, head_width = 3, 5, 512, 64  # T, S, D, Dh
    rng = np.random.default_rng(0)
    x_query, x_key_value = rng.standard_normal((n_queries, d_model)), rng.standard_normal((n_keys, d_model))
    w_query, w_key, w_value = (rng.standard_normal((d_model, head_width)) / math.sqrt(d_model) for _ in range(3))
    queries, keys, values = x_query @ w_query, x_key_value @ w_key, x_key_value @ w_value  # (T, Dh), (S, Dh), (S, Dh)
    out, probs = attention_forward(queries[None, None], keys[None, None], values[None, None])  # (1, 1, T, Dh), (1, 1, T, S)
    scores = queries @ keys.T / math.sqrt(head_width)  # (T, S)
    shapes = {"X_q": x_query.shape, "X_kv": x_key_value.shape, "W_Q": w_query.shape, "W_K": w_key.shape,
              "W_V": w_value.shape, "Q": queries.shape, "K": keys.shape, "V": values.shape, "E": scores.shape,
              "P": probs.shape[2:], "O": out.shape[2:]}  # fmt: skip
    letters = {n_queries: "T", n_keys: "S", d_model: "D", head_width: "Dh"}
    scale = {n_queries: 0.9, n_keys: 1.5, d_model: 3.2, head_width: 1.2}  # drawn sizes of T, S, D, Dh

    figure, axes = plt.subplots(figsize=(12, 5.2))
    diagram_axes(axes, (0, 17.5), (0, 7.4), f"one head: T = {n_queries} queries, S = {n_keys} keys, D = {d_model}, "
                 f"Dh = {head_width} (self-attention: X_kv = X_q, S = T)")  # fmt: skip
    places = {"X_q": (2.0, 5.8), "X_kv": (2.0, 2.4), "Q": (7.0, 5.8), "K": (7.0, 3.4), "V": (7.0, 1.2),
              "E": (11.0, 4.6), "P": (13.6, 4.6), "O": (16.0, 3.0)}  # fmt: skip
    texts = {"E": "E = Q·Kᵀ/√Dh", "P": "P = softmax(E)", "O": "O = P·V"}
    colors = {"X_q": "#d9ead3", "X_kv": "#d9ead3", "Q": "#f6d28b", "K": "#f3b6a0", "V": "#b9d7f0", "E": "#e3e3e3",
              "P": "#c9c3e6", "O": "#b9d7f0"}  # fmt: skip
    for name, (x, y) in places.items():
        rows, columns = shapes[name]
        width, height = scale[columns], scale[rows]
        axes.add_patch(plt.Rectangle((x - width / 2, y - height / 2), width, height, facecolor=colors[name], edgecolor="0.25"))
        axes.text(x, y, texts.get(name, name), ha="center", va="center", fontsize=9)
        axes.text(x, y - height / 2 - 0.3, f"({letters[rows]}, {letters[columns]}) = {shapes[name]}", ha="center", fontsize=8)
    for source, target, label in (("X_q", "Q", "· W_Q,i  (D, Dh)"), ("X_kv", "K", "· W_K,i  (D, Dh)"),
                                  ("X_kv", "V", "· W_V,i  (D, Dh)"), ("Q", "E", ""), ("K", "E", ""), ("E", "P", ""),
                                  ("P", "O", ""), ("V", "O", "")):  # fmt: skip
        (x0, y0), (x1, y1) = places[source], places[target]
        draw_arrow(axes, (x0 + scale[shapes[source][1]] / 2, y0), (x1 - scale[shapes[target][1]] / 2, y1))
        if label:
            axes.text((x0 + x1) / 2 - 0.2, (y0 + y1) / 2 + 0.25, label, fontsize=8, ha="center")
    save(figure, path)
    return {"sizes": {"T": n_queries, "S": n_keys, "D": d_model, "Dh": head_width}, "shapes": shapes,
            "rows_sum_to_one": bool(np.allclose(probs.sum(axis=-1), 1.0)),
            "core_matches_the_formula": bool(np.allclose(probs[0, 0], masked_softmax(scores, None)))}  # fmt: skip


def figure_split_merge(path):
    """Chapter 5: split_heads and merge_heads on a (1, T, D) projection whose entries are
    their column numbers, with T = 4, D = 8 and H = 2: head i is the block of columns
    i·Dh … (i + 1)·Dh − 1, and the merge puts the blocks back."""
    length, d_model, n_heads = 4, 8, 2  # T, D, H
    projected = np.broadcast_to(np.arange(d_model, dtype=float), (1, length, d_model)).copy()  # (B, T, D)
    split = split_heads(projected, n_heads)  # (B, H, T, Dh)
    merged = merge_heads(split)  # (B, T, D)
    head_width = d_model // n_heads
    figure, axes_row = plt.subplots(1, 2 + n_heads, figsize=(12, 3.4),
                                    gridspec_kw={"width_ratios": [d_model, head_width, head_width, d_model]})  # fmt: skip
    panels = [(projected[0], "X·W_Q  (T, D) = (4, 8)")]
    panels += [(split[0, head], f"head {head}  (T, Dh) = (4, {head_width})") for head in range(n_heads)]
    panels += [(merged[0], "merged  (T, D): before W_O")]
    for axes, (matrix, title) in zip(axes_row, panels):
        axes.imshow(matrix // head_width, cmap="Pastel1", vmin=0, vmax=8, aspect="equal")
        for (row, column), value in np.ndenumerate(matrix):
            axes.text(column, row, f"{int(value)}", ha="center", va="center", fontsize=9)
        axes.set_xticks(range(matrix.shape[1]))
        axes.set_yticks(range(length))
        axes.set_xlabel("channel")
        axes.set_title(title, fontsize=9)
    axes_row[0].set_ylabel("position t")
    figure.text(0.5, 0.02, "split_heads: reshape (B, T, H, Dh), then swap T and H (a view, no copy);  "
                "merge_heads: the inverse, then W_O mixes the heads' channels", ha="center", fontsize=9)  # fmt: skip
    save(figure, path)
    return {"projected": projected[0], "heads": split[0], "merged": merged[0],
            "split_is_a_view": bool(np.shares_memory(split, projected))}  # fmt: skip


def figure_kv_cache(path):
    """Chapter 10: the decoder's self-attention cache over 20 greedy steps of a small
    (untrained) model: at step t the cache holds positions 0 … t − 1, the step computes
    position t alone and appends it, and the buffer doubles from 16 to 32 positions when it
    fills; the cross-attention keys and values are projected once, before the first step."""
    config = ModelConfig(src_vocab_size=12, tgt_vocab_size=12, d_model=8, n_heads=2, d_ff=16, n_encoder_layers=1,
                         n_decoder_layers=2, dropout=0.0, max_len=32, dtype="float64")  # fmt: skip
    model = make_model(config, seed=0, backend="numpy")
    source = np.array([[5, 6, 7, 8, 9]])  # (B, S)
    memory, src_mask, _ = model.encode(source)  # (B, S, D), (B, 1, 1, S)
    cache = DecoderCache(model, memory, src_mask)
    steps = 20
    lengths, capacities, attended = [], [], []
    last = np.array([2])  # <s>
    for _ in range(steps):
        lengths.append(cache.length)
        logits, weights = decode_step(model, cache, last)  # (1, V)
        capacities.append(int(cache.self_keys[0].shape[2]))
        attended.append(int(weights["self"][0].shape[-1]))  # keys this step's query read: t + 1
        last = logits.argmax(axis=-1)
    grid = np.zeros((steps, max(capacities)))  # (steps, positions): 0 unallocated, 1 empty, 2 cached, 3 new
    for step, (length, capacity) in enumerate(zip(lengths, capacities)):
        grid[step, :capacity] = 1
        grid[step, :length] = 2
        grid[step, length] = 3
    figure, axes = plt.subplots(figsize=(12, 4.6))
    colormap = matplotlib.colors.ListedColormap(["white", "#eeeeee", "#9ecae1", "#08519c"])
    axes.imshow(grid, cmap=colormap, vmin=-0.5, vmax=3.5, aspect="auto")
    axes.set_xticks(range(0, max(capacities), 2))
    axes.set_yticks(range(steps))
    axes.tick_params(labelsize=7)
    axes.set_xlabel("position in the self-attention key/value buffer (one layer; each of the 2 layers has its own)")
    axes.set_ylabel("decoding step t")
    axes.set_title("the KV cache: light blue = kept from earlier steps, dark = computed at this step, grey = "
                   "allocated, empty\nthe buffer doubles from 16 to 32 when full; the cross-attention K, V (S = 5) "
                   "are projected once, before step 0", fontsize=9)  # fmt: skip
    save(figure, path)
    return {"cache_length_before_step": lengths, "capacity_after_step": capacities, "keys_attended": attended,
            "cross_keys_shape": list(cache.cross_keys[0].shape)}  # fmt: skip


def draw_mask(axes, mask, title):
    """A boolean (T, S) mask as a grid: dark = may attend, light = masked."""
    axes.imshow(mask, cmap="Greys", vmin=-0.3, vmax=1.2)
    axes.set_xticks(range(mask.shape[1]))
    axes.set_yticks(range(mask.shape[0]))
    axes.tick_params(labelsize=7)
    axes.set_title(title, fontsize=10)


def save(figure, path):
    figure.tight_layout()
    # the default metadata is only the matplotlib version (no date), so the bytes repeat
    figure.savefig(path, dpi=90)
    plt.close(figure)


# file name (without .png) -> the function that draws it, in chapter order
FIGURES = {
    "01-nadaraya-watson": figure_nadaraya_watson,
    "02-softmax-scaling": figure_softmax_scaling,
    "03-vector-attention": figure_vector_attention,
    "03-local-vs-global": figure_local_vs_global,
    "04-i-am-good": figure_i_am_good,
    "04-qkv-shapes": figure_qkv_shapes,
    "05-split-merge": figure_split_merge,
    "06-positional-encoding": figure_positional_encoding,
    "06-masks": figure_masks,
    "06-encoder-decoder": figure_encoder_decoder,
    "08-blocked-attention": figure_blocked_attention,
    "09-learning-rate": figure_learning_rate,
    "10-attention-vs-saliency": figure_attention_vs_saliency,
    "10-kv-cache": figure_kv_cache,
}


def plain(value):
    """A figure's numbers as JSON values: arrays become nested lists, floats keep
    SIGNIFICANT_DIGITS digits, NaN (a cell left blank) becomes None."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(f"{float(value):.{SIGNIFICANT_DIGITS}g}")
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"a figure returned a {type(value).__name__}, which data.json cannot hold")


def to_json(value, depth=0):
    """JSON with one key per line and each innermost list on one line (a matrix: a row per
    line), so that a change to one figure shows as a readable diff."""
    indent = " " * depth
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{indent} {json.dumps(key)}: {to_json(item, depth + 1)}' for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(item, (list, dict)) for item in value):
        rows = [f"{indent} {to_json(item, depth + 1)}" for item in value]
        return "[\n" + ",\n".join(rows) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)


def write_data(folder, data):
    """Merge {figure name: numbers} into folder/data.json (kept in the order of FIGURES)."""
    path = folder / DATA_FILE
    merged = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    merged.update({name: plain(numbers) for name, numbers in data.items()})
    ordered = {name: merged[name] for name in FIGURES if name in merged}
    path.write_text(to_json(ordered) + "\n", encoding="utf-8")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=FIGURES_DIR, help="folder to write the PNGs and data.json into")
    parser.add_argument("--only", action="append", choices=list(FIGURES), help="draw only this figure")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written, data = [], {}
    with plt.rc_context(STYLE):
        for name in args.only or FIGURES:
            path = args.out / f"{name}.png"
            data[name] = FIGURES[name](path)
            written.append(path)
            print(f"wrote {path}")
    print(f"wrote {write_data(args.out, data)}")
    return written


if __name__ == "__main__":
    main()
