"""`make vision`: the small CNN without attention, then with each of the ten modules inserted
at the same place, trained for the same budget, and every attention map scored.

    python -m minitransformer.vision.train                        # what `make vision` runs
    python -m minitransformer.vision.train --modules none,se,cbam --steps 200
    python -m minitransformer.vision.train --backend numpy        # the attention core's reference

Every variant sees the same batches in the same order, starts from the same backbone weights
(cnn.py:make_cnn) and takes the same number of Adam steps. Then, in eval mode:

    accuracy         on the test split and on the shifted test split (objects near the borders)
    pointing game    for the spatial maps (B, 16, 16): a hit when the map's largest cell
                     touches the object's mask (the mask pooled to 16×16 cells)
    IoU              the map scaled to [0, 1] per image and thresholded at 0.5, against the
                     cells that the object covers at least half of
    channel weights  for SE, ECA, SK, GSoP (and CBAM's channel stage): the mean weight of
                     every channel per class, and how much the classes differ (the variance of
                     the class means over the mean variance within a class, averaged over channels)

Two reference maps are scored beside the modules: a uniformly random cell (the pointing
game's chance level) and a centred Gaussian (the prior that the training objects sit in the
middle). Results go to bench/results/vision.md and .json, the pictures to docs/images/.
"""

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import backends
from ..optim import Adam
from .blocks import count_parameters, sub, trainable
from .cnn import VisionConfig, make_cnn, predict, train_step
from .modules import MODULES, get_module
from .shapes import CLASSES, DEFAULT_CACHE, load_split

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
IMAGES = REPO / "docs" / "images"
SPATIAL = [name for name, module in MODULES.items() if module.kind == "spatial"]
CHANNEL = [name for name, module in MODULES.items() if module.channel_weights is not None]


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def learning_rate(step, steps, peak, warmup=30):
    """Linear warmup, then a cosine down to 0."""
    return peak * min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + np.cos(np.pi * step / steps))


def train_variant(module, data, steps, batch_size, lr, seed, backend, progress=True):
    """Train one variant; return (params, config, wall seconds, CPU seconds of this process)."""
    config = VisionConfig(module=module)
    params = make_cnn(config, np.random.default_rng(seed))
    optimizer = Adam({key: params[key] for key in trainable(params)}, beta2=0.999, eps=1e-8)
    images, labels = data["train"][0], data["train"][2]
    order_rng = np.random.default_rng(seed + 1)  # the same batches for every variant
    order, position = order_rng.permutation(len(images)), 0
    started, cpu_started = time.perf_counter(), time.process_time()
    bar = tqdm(range(steps), desc=f"{module or 'baseline':>9}", disable=not progress, leave=True)
    for step in bar:
        if position + batch_size > len(images):
            order, position = order_rng.permutation(len(images)), 0
        batch = order[position : position + batch_size]
        position += batch_size
        loss = train_step(params, optimizer, images[batch], labels[batch], config, backend,
                          learning_rate(step, steps, lr))  # fmt: skip
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")
    return params, config, time.perf_counter() - started, time.process_time() - cpu_started


def mask_cells(masks, cells):
    """(N, 32, 32) bool -> (N, cells, cells) fraction of each cell the object covers."""
    n, size, _ = masks.shape
    factor = size // cells
    return masks.reshape(n, cells, factor, cells, factor).mean(axis=(2, 4))


def score_maps(maps, masks):
    """maps (N, h, w), masks (N, 32, 32) -> pointing-game hit rate and mean IoU."""
    coverage = mask_cells(masks, maps.shape[1])  # (N, h, w)
    flat = maps.reshape(len(maps), -1)
    peak = flat.argmax(axis=1)
    hits = coverage.reshape(len(maps), -1)[np.arange(len(maps)), peak] > 0
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    scaled = (flat - low) / np.where(high > low, high - low, 1.0)
    predicted = scaled >= 0.5
    target = coverage.reshape(len(maps), -1) >= 0.5
    union = (predicted | target).sum(axis=1)
    iou = (predicted & target).sum(axis=1) / np.maximum(union, 1)
    return {"pointing": float(hits.mean()), "iou": float(iou.mean())}


def reference_scores(masks, cells=16):
    """Chance (pointing at a random cell: the mean fraction of cells touching the object)
    and a centred Gaussian map."""
    coverage = mask_cells(masks, cells)
    centre = (np.arange(cells) + 0.5 - cells / 2) ** 2
    gaussian = np.exp(-(centre[:, None] + centre[None, :]) / (2 * (cells / 6) ** 2))
    centred = score_maps(np.broadcast_to(gaussian, (len(masks), cells, cells)), masks)
    return {"random cell": {"pointing": float((coverage > 0).mean()), "iou": None}, "centred Gaussian": centred}


def channel_statistics(weights, labels):
    """weights (N, C) -> per-class means (K, C) and the between/within variance ratio."""
    means = np.stack([weights[labels == k].mean(axis=0) for k in range(len(CLASSES))])  # (K, C)
    within = np.mean([weights[labels == k].var(axis=0) for k in range(len(CLASSES))], axis=0)  # (C,)
    ratio = float(np.mean(means.var(axis=0) / np.maximum(within, 1e-12)))
    return means, ratio


def evaluate(params, config, data, backend):
    """Accuracy on test and shifted test, and the attention maps of both."""
    result = {}
    for split in ("test", "test_shifted"):
        images, masks, labels = data[split]
        module = get_module(config.module) if config.module is not None else None

        def collect(cache):
            spatial = module.attention_map(cache) if module.kind == "spatial" else None
            channel = module.channel_weights(cache) if module.channel_weights is not None else None
            return spatial, channel

        predictions, collected = predict(params, images, config, backend, collect if module else None)
        entry = {"accuracy": float((predictions == labels).mean())}
        if module is not None and module.kind == "spatial":
            entry["maps"] = np.concatenate([spatial for spatial, _ in collected])
            entry.update(score_maps(entry["maps"], masks))
        if module is not None and module.channel_weights is not None:
            entry["channel_weights"] = np.concatenate([channel for _, channel in collected])
        result[split] = entry
    return result


def run(modules, steps, batch_size, lr, seed, backend, out_md, out_json, figures, progress=True, train_size=None,
        cache=DEFAULT_CACHE):
    data = {split: load_split(split, cache) for split in ("train", "test", "test_shifted")}
    if train_size is not None:
        data["train"] = tuple(array[:train_size] for array in data["train"])
    rows, evaluations = [], {}
    load_before = _load()
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    for module in modules:
        params, config, seconds, cpu_seconds = train_variant(module, data, steps, batch_size, lr, seed, backend, progress)
        evaluation = evaluate(params, config, data, backend)
        evaluations[module or "baseline"] = evaluation
        row = {
            "module": module or "baseline",
            "paper": get_module(module).paper if module else "",
            "kind": get_module(module).kind if module else "",
            "test_accuracy": evaluation["test"]["accuracy"],
            "shifted_accuracy": evaluation["test_shifted"]["accuracy"],
            "params": count_parameters(params),
            "module_params": count_parameters(sub(params, "attention")) if module else 0,
            "train_seconds": seconds,
            "train_cpu_seconds": cpu_seconds,
            "ms_per_step": 1000 * seconds / steps,
        }
        for split in ("test", "test_shifted"):
            if "pointing" in evaluation[split]:
                row[f"{split}_pointing"] = evaluation[split]["pointing"]
                row[f"{split}_iou"] = evaluation[split]["iou"]
            if "channel_weights" in evaluation[split]:
                means, ratio = channel_statistics(evaluation[split]["channel_weights"], data[split][2])
                row[f"{split}_channel_means"] = means.round(4).tolist()
                row[f"{split}_channel_separation"] = ratio
        rows.append(row)
    wall = time.perf_counter() - wall_started
    references = {split: reference_scores(data[split][1]) for split in ("test", "test_shifted")}
    meta = {
        "command": "make vision",
        "cpu": cpu_name(),
        "machine_note": "a shared 2-core machine: other jobs ran at the same time, so times are indicative",
        "backend": backend.name,
        "steps": steps,
        "batch_size": batch_size,
        "peak_lr": lr,
        "seed": seed,
        "train_images": len(data["train"][0]),
        "wall_seconds": wall,
        "cpu_seconds": time.process_time() - cpu_started,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "numpy": np.__version__,
    }
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps({"meta": meta, "rows": rows, "references": references}, indent=1) + "\n")
    Path(out_md).write_text(markdown_report(meta, rows, references))
    if figures:
        draw_maps(data, evaluations, Path(figures) / "vision-attention-maps.png")
        draw_channel_weights(rows, Path(figures) / "vision-channel-weights.png")
    return meta, rows, references


def _load():
    try:
        return [round(value, 2) for value in __import__("os").getloadavg()]
    except OSError:
        return None


def _pct(value):
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_report(meta, rows, references):
    lines = [
        "# Attention over channels and space: `make vision`",
        "",
        f"The CNN of minitransformer/vision/cnn.py without attention and with each module after stage 2 "
        f"(16×16 maps, 32 channels), {meta['steps']} Adam steps of {meta['batch_size']} images each "
        f"(peak learning rate {meta['peak_lr']}, warmup then cosine), the same batches and backbone initialization "
        f"for all, on {meta['train_images']} generated training images (minitransformer/vision/shapes.py). "
        f"Accuracy on 1,000 test images and 1,000 shifted test images (objects near the borders, positions never "
        f"seen in training); chance is {100 / len(CLASSES):.1f} %.",
        "",
        f"Machine: {meta['cpu']}, {meta['machine_note']} (load average {meta['load_average_before']} before, "
        f"{meta['load_average_after']} after). Attention core: the {meta['backend']} backend. "
        f"Whole run {meta['wall_seconds'] / 60:.1f} min of wall time, {meta['cpu_seconds'] / 60:.1f} min of CPU time "
        "(the CPU time is what the run costs; the wall time adds the waits for the other jobs).",
        "",
        "| module | kind | test acc % | shifted acc % | params (module) | train s (wall) | train s (CPU) | ms/step (wall) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['module']} | {row['kind'] or '–'} | {_pct(row['test_accuracy'])} | {_pct(row['shifted_accuracy'])} | "
            f"{row['params']:,} ({row['module_params']:,}) | {row['train_seconds']:.0f} | {row['train_cpu_seconds']:.0f} | "
            f"{row['ms_per_step']:.0f} |"
        )
    lines += [
        "",
        "## Spatial maps against the object masks",
        "",
        "Pointing game: the share of images whose map peaks on a cell the object touches. IoU: the map scaled "
        "to [0, 1] and thresholded at 0.5, against the cells the object covers at least half of.",
        "",
        "| map | test pointing % | test IoU % | shifted pointing % | shifted IoU % |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if "test_pointing" in row:
            lines.append(f"| {row['module']} | {_pct(row['test_pointing'])} | {_pct(row['test_iou'])} | "
                         f"{_pct(row['test_shifted_pointing'])} | {_pct(row['test_shifted_iou'])} |")  # fmt: skip
    for name in ("random cell", "centred Gaussian"):
        test, shifted = references["test"][name], references["test_shifted"][name]
        lines.append(f"| *{name}* | {_pct(test['pointing'])} | {_pct(test['iou'])} | "
                     f"{_pct(shifted['pointing'])} | {_pct(shifted['iou'])} |")  # fmt: skip
    lines += [
        "",
        "## Channel weights per class",
        "",
        "Separation: the variance of the six class means of a channel's weight over the mean variance within a "
        "class, averaged over the 32 channels (0: the weights ignore the class). The per-class means are in "
        "vision.json and drawn in docs/images/vision-channel-weights.png.",
        "",
        "| module | separation (test) | weight range over channels and classes |",
        "| --- | ---: | --- |",
    ]
    for row in rows:
        if "test_channel_means" in row:
            means = np.array(row["test_channel_means"])
            lines.append(f"| {row['module']} | {row['test_channel_separation']:.2f} | {means.min():.2f} – {means.max():.2f} |")
    return "\n".join(lines) + "\n"


def draw_maps(data, evaluations, path, per_class=1):
    """A grid: one test image per class and two shifted ones; the image, its mask, then each spatial map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spatial = [name for name in evaluations if name in SPATIAL]
    if not spatial:
        return
    picks = []
    for k in range(len(CLASSES)):
        picks.append(("test", int(np.flatnonzero(data["test"][2] == k)[0])))
    picks += [("test_shifted", 0), ("test_shifted", 1)]
    columns = 2 + len(spatial)
    figure, axes = plt.subplots(len(picks), columns, figsize=(1.3 * columns, 1.35 * len(picks)))
    for row, (split, index) in enumerate(picks):
        image, mask, label = data[split][0][index], data[split][1][index], data[split][2][index]
        axes[row, 0].imshow(image.transpose(1, 2, 0))
        axes[row, 0].set_ylabel(f"{CLASSES[label]}" + (" (shifted)" if split == "test_shifted" else ""), fontsize=7)
        axes[row, 1].imshow(mask, cmap="gray")
        for column, name in enumerate(spatial, start=2):
            attention = evaluations[name][split]["maps"][index]
            axes[row, column].imshow(np.kron(attention, np.ones((2, 2))), cmap="viridis")
            axes[row, column].contour(mask, levels=[0.5], colors="white", linewidths=0.6)
    for column, title in enumerate(["image", "mask", *spatial]):
        axes[0, column].set_title(title, fontsize=7)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout(pad=0.2)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def draw_channel_weights(rows, path):
    """One heat map per channel module: classes × channels, the mean weight on the test split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [row for row in rows if "test_channel_means" in row]
    if not entries:
        return
    figure, axes = plt.subplots(len(entries), 1, figsize=(7, 1.15 * len(entries) + 0.4), squeeze=False)
    for axis, row in zip(axes[:, 0], entries):
        means = np.array(row["test_channel_means"])
        shown = axis.imshow(means, aspect="auto", cmap="magma")
        axis.set_yticks(range(len(CLASSES)), CLASSES, fontsize=6)
        axis.set_xticks([])
        axis.set_title(f"{row['module']}: mean channel weight per class (separation {row['test_channel_separation']:.2f})", fontsize=7)
        figure.colorbar(shown, ax=axis, fraction=0.02)
    axes[-1, 0].set_xlabel("channel", fontsize=7)
    figure.tight_layout(pad=0.3)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default="none," + ",".join(MODULES),
                        help="comma-separated: none (the baseline) and module names")  # fmt: skip
    parser.add_argument("--steps", type=int, default=600, help="Adam steps per variant")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--data", default=str(DEFAULT_CACHE), help="the shapes cache (built there when missing)")
    parser.add_argument("--backend", default="auto", help="the attention core: numpy, cython, cupy or auto")
    parser.add_argument("--out", default=str(RESULTS / "vision"), help="results stem: writes STEM.md and STEM.json")
    parser.add_argument("--figures", default=str(IMAGES), help="folder for the PNGs ('' for none)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 2:
        raise ValueError(f"--batch-size must be >= 2 (BatchNorm needs a batch), got {args.batch_size}")
    modules = [None if name == "none" else get_module(name).name for name in args.modules.split(",") if name]
    backend = backends.get(args.backend)
    meta, rows, _ = run(modules, args.steps, args.batch_size, args.lr, args.seed, backend, f"{args.out}.md",
                        f"{args.out}.json", args.figures or None, not args.no_progress, args.train_size, args.data)  # fmt: skip
    for row in rows:
        print(f"{row['module']:>10}: test {100 * row['test_accuracy']:.1f} %  shifted {100 * row['shifted_accuracy']:.1f} %  "
              f"{row['train_seconds']:.0f} s")  # fmt: skip
    print(f"wrote {args.out}.md and .json in {meta['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
