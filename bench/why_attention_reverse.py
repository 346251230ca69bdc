"""The bottleneck in isolation: RNNenc and RNNsearch learn to reverse sequences of 4 to 40
symbols, and their accuracy is measured by length.

    python bench/why_attention_reverse.py               # 2 × 300 steps, about 5 minutes on 2 cores
    python bench/why_attention_reverse.py --steps 50    # a quick look

Translation mixes many things; reversal isolates the one chapter 15 is about. Every
training batch is fresh: 32 sequences of 4-40 symbols drawn from 20, to be written
backwards, so nothing can be memorized and both models must learn the rule. Both take the
same number of steps of the same recipe (Adam, lr 3e-3, clipping at norm 1), at width
E = H = A = 64. RNNenc must carry up to 40 symbols in its 128-number summary; RNNsearch
can look each one up, since output i is input S-1-i. The measure is the share of output
positions that are right, greedy decoding, 40 test sequences per length bin.

Writes bench/results/<cpu>-<isa>/why_attention_reverse.{json,md} and
docs/images/why-attention-reverse.png.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import common  # noqa: E402
from minitransformer.decode import greedy_decode  # noqa: E402
from minitransformer.optim import Adam, clip_grad_norm  # noqa: E402
from minitransformer.rnn import RNNConfig, make_rnn_model  # noqa: E402

PAD, BOS, EOS, FIRST_SYMBOL, N_SYMBOLS = 0, 2, 3, 4, 20
BINS = ((4, 9), (10, 14), (15, 19), (20, 24), (25, 29), (30, 34), (35, 40))
FIGURE = REPO / "docs" / "images" / "why-attention-reverse.png"


def batch(rng, lengths):
    """Sequences of the given lengths -> src (B, S), tgt (B, S+2) = <s> reversed </s>."""
    width = int(max(lengths))
    src = np.full((len(lengths), width), PAD, dtype=np.int64)
    tgt = np.full((len(lengths), width + 2), PAD, dtype=np.int64)
    for row, length in enumerate(lengths):
        symbols = rng.integers(FIRST_SYMBOL, FIRST_SYMBOL + N_SYMBOLS, size=length)
        src[row, :length] = symbols
        tgt[row, : length + 2] = [BOS, *symbols[::-1], EOS]
    return src, tgt


def train(architecture, steps, seed):
    config = RNNConfig(architecture, src_vocab_size=FIRST_SYMBOL + N_SYMBOLS, tgt_vocab_size=FIRST_SYMBOL + N_SYMBOLS,
                       embed_size=64, hidden_size=64, align_size=64, dropout=0.0, max_len=48, dtype="float32")
    model = make_rnn_model(config, seed=seed)
    optimizer = Adam(model.params, beta1=0.9, beta2=0.98, eps=1e-9)
    rng = np.random.default_rng(seed + 1)
    started, losses = time.monotonic(), []
    for step in range(1, steps + 1):
        src, tgt = batch(rng, rng.integers(4, 41, size=32))
        losses.append(model.loss_and_grads(src, tgt[:, :-1], tgt[:, 1:]))
        clip_grad_norm(model.grads, 1.0)
        optimizer.step(model.params, model.grads, 3e-3)
        if step % 50 == 0 or step == steps:
            print(f"  {architecture}: step {step}, loss {np.mean(losses[-50:]):.3f}, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    return model, time.monotonic() - started, float(np.mean(losses[-50:]))


def accuracy_by_length(model, per_bin, seed):
    rng = np.random.default_rng(seed + 2)
    result = {}
    for low, high in BINS:
        lengths = rng.integers(low, high + 1, size=per_bin)
        src, tgt = batch(rng, lengths)
        outputs = greedy_decode(model, src, BOS, EOS, max_len=high + 2)
        right = total = 0
        for row, length in enumerate(lengths):
            expected = list(tgt[row, 1 : length + 1])
            produced = outputs[row][:length] + [None] * (length - len(outputs[row][:length]))
            right += sum(int(a == b) for a, b in zip(produced, expected))
            total += length
        result[f"{low}-{high}"] = round(right / total, 4)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--per-bin", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=str(FIGURE))
    args = parser.parse_args(argv)
    info = common.machine_info()
    results = {}
    for architecture in ("rnnenc", "rnnsearch"):
        model, seconds, loss = train(architecture, args.steps, args.seed)
        results[architecture] = {"parameters": model.num_parameters(), "steps": args.steps,
                                 "train_seconds": round(seconds, 1), "final_train_loss": round(loss, 4),
                                 "accuracy_by_length": accuracy_by_length(model, args.per_bin, args.seed)}
        print(f"  {architecture}: {results[architecture]['accuracy_by_length']}", flush=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for architecture, label, style in (("rnnenc", "RNNenc (fixed-length vector)", "s--"),
                                       ("rnnsearch", "RNNsearch (additive attention)", "o-")):
        accuracy = results[architecture]["accuracy_by_length"]
        centres = [(int(key.split("-")[0]) + int(key.split("-")[1])) / 2 for key in accuracy]
        axes.plot(centres, [100 * value for value in accuracy.values()], style, label=label)
    axes.set_xlabel("sequence length (symbols)")
    axes.set_ylabel("output positions right (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    axes.set_title(f"Reversing sequences: {args.steps} training steps each", fontsize=10)
    figure.tight_layout()
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.figure, dpi=110)
    plt.close(figure)

    out = common.results_dir()
    record = {"benchmark": "why_attention_reverse", "steps": args.steps, "per_bin": args.per_bin, "seed": args.seed,
              "machine": info, "models": results}
    (out / "why_attention_reverse.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    bins = [f"{low}-{high}" for low, high in BINS]
    lines = ["# The bottleneck in isolation: reversing sequences, accuracy by length", "",
             f"`python bench/why_attention_reverse.py --steps {args.steps}` on {info['cpu_model']} "
             f"({info['usable_cpus']} usable CPUs, load average {info['load_average_1_5_15min']}).", "",
             "| model | parameters | train seconds | " + " | ".join(bins) + " |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in bins) + " |"]
    for architecture, result in results.items():
        cells = " | ".join(f"{100 * result['accuracy_by_length'][b]:.1f} %" for b in bins)
        lines.append(f"| {architecture} | {result['parameters']:,} | {result['train_seconds']:.0f} | {cells} |")
    (out / "why_attention_reverse.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
