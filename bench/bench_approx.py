"""Cheaper attention, measured: approximation error, time and memory against exact attention,
and the translation quality of a toy model trained with each method in its encoder.

    nice -n 19 python bench/bench_approx.py              # writes bench/results/<cpu>-<isa>/approx.{md,json,png}
    nice -n 19 python bench/bench_approx.py --quick      # a smoke test: small sizes, few steps
    nice -n 19 python bench/bench_approx.py --bleu-steps 0   # no training: random inputs only
    make bench                                           # every bench/bench_*.py, through run_all.py

Size letters: B batch, H heads, T = S sequence length, Dh head width.

Four parts, each checked against exact attention on the same inputs
(minitransformer/layers/attention.py, in float64 for the errors):

  1. Quality. A toy model (the `toy` config) is trained for the same number of steps with
     each encoder self-attention method, and scored by BLEU on the toy test set and on its
     compositional split. The exact model comes first: its weights give part 3's inputs.
  2. Error on random inputs: ‖out − exact‖ / ‖exact‖ at B=1, H=4, T=S=512, Dh=64, q, k, v
     with N(0, 1) entries (the scores have unit variance, so attention is flat-ish), as the
     rank k, features m, landmarks, samples or band w grow. Random draws: the median of 3 seeds.
  3. Error on the trained toy model's own queries, keys and values (layer 0 of the encoder,
     a batch of test sentences, padded; only real rows count). Its attention is peaked,
     which low-rank methods find harder and local ones easier.
  4. Time and peak memory of one forward + backward, float32, B=1, H=4, Dh=64, against T
     from 64 to 8,192: exact attention on the fused Cython kernels (which store the (T, T)
     weights) and on the blocked ones (which do not), and each method at a fixed size.
     The crossover T is the first length from which a method stays faster than the faster
     exact kernel. Exact fused attention is skipped where its (T, T) weights and their
     gradient would pass EXACT_FUSED_LIMIT_BYTES; the report says where.

Timing: medians of interleaved repeats (bench/common.py); on a shared machine the
figures are noisy (the load average is recorded), so read ratios, not absolute times.
Memory: tracemalloc's peak of NumPy arrays during the call (what the kernels allocate
included), above what was held before.
"""

import argparse
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402

from minitransformer import _ext  # noqa: E402
from minitransformer.approx import linformer, nystrom, performer, sampling  # noqa: E402
from minitransformer.backends import cython_backend  # noqa: E402
from minitransformer.layers.attention import attention_forward  # noqa: E402

# exact fused attention keeps P (T, T) per head and makes dP: skip it above this
EXACT_FUSED_LIMIT_BYTES = 2 * 2**30
# the sizes of part 2 and part 3, per method
SIZES_RANDOM = {
    "linformer": [8, 16, 32, 64, 128, 256],
    "linformer-gaussian": [8, 16, 32, 64, 128, 256],
    "performer": [16, 32, 64, 128, 256, 512, 1024],
    "nystrom": [4, 8, 16, 32, 64, 128, 256],
    "sampling": [8, 16, 32, 64, 128, 256],
    "banded": [4, 8, 16, 32, 64, 128, 256],
}
SIZES_TOY = {
    "linformer": [1, 2, 4, 8, 16],
    "linformer-gaussian": [1, 2, 4, 8, 16],
    "performer": [8, 32, 128, 512, 2048],
    "nystrom": [1, 2, 4, 8],
    "sampling": [1, 2, 4, 8, 16],
    "banded": [0, 1, 2, 4, 8],
}
PARAMETER = {"linformer": "rank k, E = F segment means", "linformer-gaussian": "rank k, E, F Gaussian", "performer": "features m", "nystrom": "landmarks",
             "sampling": "samples m, per query", "banded": "window w"}
# the fixed sizes of part 4, and the encoder specs of part 1
TIMED = {"linformer": 64, "performer": 64, "performer-causal": 64, "nystrom": 32, "sampling": 32, "banded": 32}
TRAINED = {"exact": "exact", "linformer": "linformer:8", "performer": "performer:64", "nystrom": "nystrom:4",
           "sampling": "sampling:4", "banded": "window 2"}


# --- the methods, one call each ------------------------------------------------------------


def approximate(method, size, q, k, v, mask, seed):
    """out (B, H, T, Dh) of `method` at `size`, float64."""
    rng = np.random.default_rng(seed)
    src_len, head_dim = k.shape[2], k.shape[3]
    if method == "linformer":
        projection = linformer.segment_mean_projection(size, src_len)
        return linformer.linformer_forward(q, k, v, projection, projection, mask)[0]
    if method == "linformer-gaussian":
        proj_k, proj_v = linformer.linformer_projections(size, src_len, rng)
        return linformer.linformer_forward(q, k, v, proj_k, proj_v, mask)[0]
    if method == "performer":
        return performer.performer_forward(q, k, v, performer.orthogonal_features(size, head_dim, rng), mask)[0]
    if method == "nystrom":
        return nystrom.nystrom_forward(q, k, v, size, mask)[0]
    if method == "sampling":
        return sampling.sampling_forward(q, k, v, size, mask, rng)[0]
    keep = None if mask is None else mask[:, 0, 0, :]
    return _ext.banded.banded_forward(q, k, v, size, False, keep)[0]


def relative_error(out, exact, rows=None):
    """‖out − exact‖ / ‖exact‖ over the rows where `rows` (B, 1, T, 1) is True."""
    if rows is not None:
        out, exact = out * rows, exact * rows
    return float(np.linalg.norm(out - exact) / np.linalg.norm(exact))


def error_curves(q, k, v, mask, sizes, seeds, rows=None):
    """{method: [(size, median relative error over seeds)]}."""
    exact = attention_forward(q, k, v, mask)[0]
    curves = {}
    for method, values in sizes.items():
        points = []
        for size in values:
            if method in ("nystrom", "linformer") and size > k.shape[2]:
                continue
            draws = 1 if method in ("nystrom", "banded", "linformer") else seeds  # deterministic methods
            errors = [relative_error(approximate(method, size, q, k, v, mask, seed), exact, rows) for seed in range(draws)]
            points.append((size, float(np.median(errors))))
        curves[method] = points
    return curves


# --- part 4: time and memory ----------------------------------------------------------------


def timed_calls(q, k, v, dout, omega, rng):
    """{name: fn()} running one forward + backward each, float32."""
    size = TIMED
    projection = linformer.segment_mean_projection(TIMED["linformer"], q.shape[2])  # (k, T)

    def exact_fused():
        out, probs = cython_backend.attention_forward(q, k, v, None)
        cython_backend.attention_backward(dout, q, k, v, probs)

    def exact_blocked():
        out, lse = cython_backend.attention_forward_blocked(q, k, v, None, 64)
        cython_backend.attention_backward_blocked(dout, q, k, v, out, lse, None, 64)

    def run_linformer():
        out, cache = linformer.linformer_forward(q, k, v, projection, projection)
        linformer.linformer_backward(dout, cache)

    def run_performer(causal):
        def run():
            out, cache = performer.performer_forward(q, k, v, omega, None, causal)
            performer.performer_backward(dout, cache)
        return run

    def run_nystrom():
        out, cache = nystrom.nystrom_forward(q, k, v, size["nystrom"])
        nystrom.nystrom_backward(dout, cache)

    def run_sampling():
        out, cache = sampling.sampling_forward(q, k, v, size["sampling"], None, rng, block_size=64)
        sampling.sampling_backward(dout, cache)

    def run_banded():
        out, band = _ext.banded.banded_forward(q, k, v, size["banded"])
        _ext.banded.banded_backward(dout, q, k, v, band, size["banded"])

    calls = {"exact-fused": exact_fused, "exact-blocked": exact_blocked, "linformer": run_linformer,
             "performer": run_performer(False), "performer-causal": run_performer(True),
             "nystrom": run_nystrom, "sampling": run_sampling, "banded": run_banded}
    return calls


def time_and_memory(lengths, heads=4, head_dim=64, quick=False):
    """{name: {T: {"median_ms", "peak_mib"}}}, and the lengths where exact-fused was skipped."""
    rng = np.random.default_rng(0)
    omega = performer.orthogonal_features(TIMED["performer"], head_dim, rng)
    results, skipped = {}, []
    for length in lengths:
        q, k, v, dout = (rng.standard_normal((1, heads, length, head_dim)).astype(np.float32) for _ in range(4))
        calls = timed_calls(q, k, v, dout, omega, rng)
        # P and dS (T, T) per head, float32, plus scratch
        if 2 * heads * length * length * 4 > EXACT_FUSED_LIMIT_BYTES:
            calls.pop("exact-fused")
            skipped.append(length)
        rounds = 1 if quick or length >= 4096 else (3 if length >= 1024 else 7)
        timing = common.interleaved_timings(calls, rounds=rounds, warmup=0 if length >= 4096 else 1)
        for name, function in calls.items():
            peak = common.peak_numpy_bytes(function)
            results.setdefault(name, {})[length] = {"median_ms": timing[name]["median_ms"], "peak_mib": peak / 2**20}
        print(f"  T={length}: " + ", ".join(f"{n} {r[length]['median_ms']:.1f} ms" for n, r in results.items() if length in r),
              flush=True)
    return results, skipped


def crossovers(results):
    """{method: the first T from which it stays faster than both exact kernels, or None}."""
    out = {}
    lengths = sorted(results["exact-blocked"])
    for name, by_length in results.items():
        if name.startswith("exact"):
            continue
        crossing = None
        for length in lengths:
            exact = min(results[e][length]["median_ms"] for e in ("exact-fused", "exact-blocked") if length in results[e])
            if by_length[length]["median_ms"] < exact:
                crossing = length if crossing is None else crossing
            else:
                crossing = None
        out[name] = crossing
    return out


# --- parts 1 and 3: the toy model --------------------------------------------------------------


def run_name(encoder):
    """The run directory's name for an encoder spec: approx-performer-64, approx-window-2."""
    return f"approx-{encoder.replace(':', '-').replace(' ', '-')}"


def train_toy(encoder, steps, work):
    """Train the toy config for `steps` steps with `encoder` ("window 2": local attention,
    in the decoder's self-attention too); returns (metrics, model, tokenizer)."""
    from minitransformer.configs import TOY
    from dataclasses import replace
    from minitransformer.train import Trainer

    fields = dict(name=run_name(encoder), max_steps=steps, epochs=None,
                  minutes=None, eval_every=10**9, checkpoint_every=10**9, average_checkpoints=False,
                  keep_checkpoints=0, eval_sentences=50, samples=0)
    if encoder.startswith("window"):
        config = replace(TOY.with_model(attention_window=int(encoder.split()[1])), **fields)
    else:
        config = replace(TOY.with_model(encoder_attention=encoder), **fields)
    run_dir = work / config.name
    finished = finished_run(run_dir, steps)
    if finished is not None:
        return finished
    shutil.rmtree(run_dir, ignore_errors=True)
    trainer = Trainer(config, run_dir, backend="cython", progress=False, out=io.StringIO())
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    metrics = trainer.finish()
    metrics["train_seconds"] = seconds
    return metrics, trainer.model, trainer.tokenizer


def finished_run(run_dir, steps):
    """(metrics, model, tokenizer) of a run that an earlier bench finished with this many
    steps (a rerun, or another process, reuses it), else None."""
    from minitransformer.checkpoint import load_for_inference

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not metrics.get("finished") or metrics.get("steps") != steps:
        return None
    model, tokenizer, _ = load_for_inference(run_dir, backend="cython")
    return metrics, model, tokenizer


def toy_queries_keys(model, tokenizer, n_sentences=32):
    """q, k, v (B, H, S, Dh) float64 of encoder layer 0 on test sentences, the padding
    mask (B, 1, 1, S) and the real rows (B, 1, S, 1)."""
    from minitransformer.data import load_pairs

    english = [pair[0] for pair in load_pairs(common.REPO / "data" / "toy-test.tsv")[:n_sentences]]
    ids = [tokenizer.encode_src(sentence) for sentence in english]
    width = max(len(row) for row in ids)
    src = np.zeros((len(ids), width), dtype=np.int64)
    for row, sentence_ids in enumerate(ids):
        src[row, : len(sentence_ids)] = sentence_ids
    _, src_mask, (_, (caches, _)) = model.encode(src)
    multihead_cache = caches[0][0][1]
    q, k, v = (np.asarray(x, dtype=np.float64) for x in multihead_cache[4:7])
    return q, k, v, src_mask, src_mask[:, 0, 0, :, None][:, None]


# --- the report ---------------------------------------------------------------------------------


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    for ax, key, title in ((axes[0], "error_random", "random q, k, v (T = 512, Dh = 64)"),
                           (axes[1], "error_toy", "trained toy model, encoder layer 0")):
        for method, points in report.get(key, {}).items():
            sizes, errors = zip(*points) if points else ((), ())
            ax.plot([s if s > 0 else 0.5 for s in sizes], errors, marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("rank k / features m / landmarks / samples / window w")
        ax.set_ylabel("relative error of the output")
        ax.set_title(title)
        ax.legend(fontsize=8)
    for ax, field, label in ((axes[2], "median_ms", "forward + backward (ms)"), (axes[3], "peak_mib", "peak NumPy memory (MiB)")):
        for name, by_length in report["timing"].items():
            lengths = sorted(int(t) for t in by_length)
            ax.plot(lengths, [by_length[t][field] if t in by_length else by_length[str(t)][field] for t in lengths],
                    marker="o", linestyle="--" if name.startswith("exact") else "-", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' (')[0]}, float32, B=1, H=4, Dh=64")
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(report):
    info = report["machine"]
    lines = [
        "# Cheaper attention, measured",
        "",
        f"Machine: {common.machine_line(info, report['sgemm_peak_gflops'])}. Load average (1, 5, 15 min) before "
        f"{[round(x, 2) for x in info['load_average_1_5_15min']]}, after {report['load_after']}. Command: `{report['command']}`.",
        "The machine is shared: the times are noisy (read the ratios within one run, not the absolute figures).",
        "",
    ]
    if report.get("quality"):
        lines += [f"## 1. Quality: the toy model, {report['bleu_steps']} training steps with each encoder self-attention",
                  "", "Same config (`toy`), seed, batches and step budget; the decoder is exact, except in the banded row, "
                  "where `attention_window = 2` makes both self-attentions local (on the banded kernel). "
                  "BLEU with greedy decoding on the toy test set and its compositional split.", ""]
        rows = [[name, spec, f"{m['test_bleu']:.1f}", f"{m['test_compositional_bleu']:.1f}", f"{m['valid_loss']:.3f}",
                 f"{m['train_seconds']:.0f}"] for name, (spec, m) in report["quality"].items()]
        lines += [common.markdown_table(["method", "encoder", "test BLEU", "compositional BLEU", "valid loss", "train s"], rows), ""]
    for key, title in (("error_random", "2. Error on random inputs (B=1, H=4, T=S=512, Dh=64, float64; median of 3 draws)"),
                       ("error_toy", "3. Error on the trained toy model's queries and keys (encoder layer 0)")):
        if key not in report:
            continue
        lines += [f"## {title}", "", "Relative error ‖out − exact‖/‖exact‖ at each size.", ""]
        for method, points in report[key].items():
            lines.append(f"- **{method}** ({PARAMETER[method]}): " + ", ".join(f"{s}: {e:.3g}" for s, e in points))
        lines.append("")
    timing = report["timing"]
    lengths = sorted(int(t) for t in timing["exact-blocked"])
    lines += ["## 4. Time and peak memory, forward + backward (float32, B=1, H=4, Dh=64, one thread)", "",
              "Sizes: " + ", ".join(f"{n} {s}" for n, s in TIMED.items()) + ". "
              + (f"Exact fused attention skipped at T = {', '.join(map(str, report['skipped']))}: its (T, T) weights and "
                 f"their gradient would pass {EXACT_FUSED_LIMIT_BYTES / 2**30:.0f} GiB." if report["skipped"] else ""), ""]
    header = ["T"] + list(timing)
    rows = [[t] + [f"{timing[n][t]['median_ms']:.1f}" if t in timing[n] else "skipped" for n in timing] for t in lengths]
    lines += ["Median time (ms):", "", common.markdown_table(header, rows), ""]
    rows = [[t] + [f"{timing[n][t]['peak_mib']:.1f}" if t in timing[n] else "skipped" for n in timing] for t in lengths]
    lines += ["Peak NumPy memory (MiB):", "", common.markdown_table(header, rows), ""]
    lines += ["Crossover: the first T from which the method stays faster than the faster exact kernel "
              "(none: not within 8,192).", ""]
    lines += [f"- {name}: {'T = ' + str(t) if t else 'none'}" for name, t in report["crossover"].items()]
    lines += ["", "![error and cost](approx.png)", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few steps: a smoke test")
    parser.add_argument("--bleu-steps", type=int, default=500, help="training steps per method (0: skip parts 1 and 3)")
    parser.add_argument("--train-only", metavar="METHOD", help="only train METHOD (one of TRAINED) into the "
                        "scratch folder, for a parallel worker; part 1 then reuses its run")
    parser.add_argument("--reuse-only", action="store_true",
                        help="part 1 reports only the methods whose runs an earlier bench finished; trains nothing")
    parser.add_argument("--part", choices=("all", "quality", "cost"), default="all",
                        help="quality: parts 1 and 3; cost: parts 2 and 4 (two processes can share the work; "
                             "the second to finish writes the report)")
    args = parser.parse_args(argv)
    if _ext.banded is None or cython_backend.unavailable_reason():
        print("bench_approx: the Cython kernels are not built (make setup)", file=sys.stderr)
        return 1
    info = common.machine_info()
    report = {"machine": info, "sgemm_peak_gflops": common.matmul_peak_gflops()["peak_gflops"],
              "command": "nice -n 19 python bench/bench_approx.py" + (" --quick" if args.quick else "")
              + (f" --bleu-steps {args.bleu_steps}" if args.bleu_steps != 500 else "")}
    steps = min(args.bleu_steps, 60) if args.quick else args.bleu_steps
    work = common.SCRATCH / "approx"
    if args.train_only:
        metrics = train_toy(TRAINED[args.train_only], steps, work)[0]
        print(f"{args.train_only}: test BLEU {metrics['test_bleu']:.1f}")
        return 0
    if steps > 0 and args.part in ("all", "quality"):
        print(f"part 1: training the toy model {steps} steps with each method…", flush=True)
        report["bleu_steps"] = steps
        quality, exact_model = {}, None
        for name, spec in (TRAINED if not args.quick else {"exact": "exact", "performer": "performer:64"}).items():
            if args.reuse_only and finished_run(work / run_name(spec), steps) is None:
                print(f"  {name}: no finished run in {work}, left out", flush=True)
                continue
            metrics, model, tokenizer = train_toy(spec, steps, work)
            quality[name] = (spec, {key: metrics.get(key) for key in
                                    ("test_bleu", "test_compositional_bleu", "valid_loss", "steps", "train_seconds")})
            print(f"  {name}: test BLEU {metrics['test_bleu']:.1f}, compositional {metrics['test_compositional_bleu']:.1f}",
                  flush=True)
            if name == "exact":
                exact_model, exact_tokenizer = model, tokenizer
                print("part 3: error on the toy model's queries and keys…", flush=True)
                q, k, v, mask, rows = toy_queries_keys(exact_model, exact_tokenizer)
                report["toy_shape"] = list(q.shape)
                report["error_toy"] = error_curves(q, k, v, mask, SIZES_TOY, seeds=3, rows=rows)
        report["quality"] = quality
    if args.part in ("all", "cost"):
        print("part 2: error on random inputs…", flush=True)
        rng = np.random.default_rng(1)
        length = 128 if args.quick else 512
        q, k, v = (rng.standard_normal((1, 4, length, 64)) for _ in range(3))
        sizes = {m: [s for s in values if s <= length] for m, values in SIZES_RANDOM.items()}
        report["error_random"] = error_curves(q, k, v, None, sizes, seeds=3)
        print("part 4: time and memory against T…", flush=True)
        lengths = [64, 128, 256, 512] if args.quick else [64, 128, 256, 512, 1024, 2048, 4096, 8192]
        report["timing"], report["skipped"] = time_and_memory(lengths, quick=args.quick)
        report["crossover"] = crossovers(report["timing"])
    report["load_after"] = [round(float(x), 2) for x in os.getloadavg()]
    if args.part != "all":
        path = common.write_json(f"approx-{args.part}", report)
        other = path.with_name(f"approx-{'cost' if args.part == 'quality' else 'quality'}.json")
        if not other.exists():
            print(f"bench_approx: wrote {path}; the report waits for the other part")
            return 0
        parts = json.loads(other.read_text())
        parts["timing"] = {name: {int(t): r for t, r in by_length.items()} for name, by_length in parts.get("timing", {}).items()}
        for key, value in parts.items():
            if key not in report or key == "command":
                report[key] = value
        report["command"] = report["command"].split(" --part")[0] + " (as --part quality and --part cost, side by side)"
    path = common.write_json("approx", report)
    common.write_text("approx.md", markdown(report))
    plot(report, common.results_dir() / "approx.png")
    print(f"bench_approx: wrote {path.with_suffix('.md')}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
