"""Why attention, measured: RNNenc, RNNsearch and the Transformer, the same wall-clock
budget each on the same data, and their test BLEU against the source sentence's length.

    python bench/why_attention.py                          # make why-attention: 3 × 5 min of training
    python bench/why_attention.py --minutes 0.3 --per-bin 5   # a quick look (about 3 minutes)

The data are the long-sentence split of the toy corpus (data/long-*.tsv, written by
`make data`): sentences of 5 to 59 English words made of the toy grammar's clauses joined
by "and" and "because", with relative clauses. Each model trains with the project's own
trainer (minitransformer/train.py: the same BPE vocabulary, batches of about 2048 padded
tokens, warmup + 1/√step learning rate, label smoothing, clipping, Adam) for ``--minutes``
of wall clock, then translates the test split greedily. BLEU is computed per bin of source
length (5-9, 10-14, … words), so the curve is Bahdanau et al.'s Figure 2 on this task.

The models, each at the toy config's width D = 64:
  - rnnenc      Cho et al.: a bidirectional GRU encoder whose final states are the only
                thing the GRU decoder sees (rnn/model.py);
  - rnnsearch   Bahdanau et al.: the same, plus additive attention over all encoder
                states at every decoder step;
  - transformer the toy config: 2 + 2 layers, 4 heads, F = 256 (model.py).

The same minutes is the fair budget on one machine, and the one that matters to the
argument: the Transformer's steps are parallel over positions, an RNN's are sequential,
so in equal time they see different numbers of sentences. The report gives each model's
parameters, training steps, tokens/s and the BLEU of every bin. It writes
bench/results/<cpu>-<isa>/why_attention.{json,md} and the figure
docs/images/why-attention.png (chapter 15).
"""

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import common  # noqa: E402
from minitransformer.configs import TOY  # noqa: E402
from minitransformer.corpus.long import LENGTH_BINS, length_bin  # noqa: E402
from minitransformer.data import group_references, load_pairs  # noqa: E402
from minitransformer.evaluate import corpus_bleu, translate_sentences  # noqa: E402
from minitransformer.train import Trainer  # noqa: E402

MODELS = ("rnnenc", "rnnsearch", "transformer")
FIGURE = REPO / "docs" / "images" / "why-attention.png"
DATA = REPO / "data"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock training minutes per model (5)")
    parser.add_argument("--per-bin", type=int, default=None, help="test sentences per length bin (default: all 40)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--backend", default="auto", help="the Transformer's backend (the RNNs run in NumPy)")
    parser.add_argument("--figure", default=str(FIGURE), help="where to write the PNG")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train_config(model, minutes, seed):
    """The toy config on the long split, for ``minutes`` of training and one evaluation."""
    # max_len 160: 59 English words are about 70 pieces, their French up to about 90
    toy = TOY.with_architecture(model).with_model(max_len=160)
    return replace(
        toy,
        name=f"why-attention-{model}",
        train_data=str(DATA / "long-train.tsv"),
        valid_data=str(DATA / "long-valid.tsv"),
        test_data=str(DATA / "long-test.tsv"),
        compositional_test_data=None,
        # a short warmup: an RNN takes only a few hundred steps in minutes on 2 cores; the
        # peak lr 0.5 / √(64 · 100) ≈ 6e-3 is the toy config's
        warmup_steps=100,
        lr_factor=0.5,
        epochs=None,
        minutes=minutes,
        eval_every=10**9,  # only the evaluation at the end of the budget (on eval_sentences)
        eval_sentences=20,
        samples=1,
        log_every=20,
        checkpoint_every=10**9,  # one checkpoint, at the end
        keep_checkpoints=0,
        average_checkpoints=False,
        seed=seed,
    )


def test_by_length(per_bin):
    """Distinct test sources with their references, bin by bin -> {bin: (sources, references)}."""
    sources, references = group_references(load_pairs(DATA / "long-test.tsv"))
    bins = {bin_: ([], []) for bin_ in LENGTH_BINS}
    for source, refs in zip(sources, references):
        chosen = bins[length_bin(source)]
        if per_bin is None or len(chosen[0]) < per_bin:
            chosen[0].append(source)
            chosen[1].append(refs)
    return bins


def run_model(model, args, bins, scratch):
    config = train_config(model, args.minutes, args.seed)
    print(f"\n=== {model}: {args.minutes:g} minutes of training ===", flush=True)
    trainer = Trainer(config, scratch / model, backend=args.backend if model == "transformer" else "numpy",
                      progress=True, overwrite=True)
    trainer.train()
    net, tokenizer = trainer.model, trainer.tokenizer
    started = time.monotonic()
    per_bin, all_hypotheses, all_references = {}, [], []
    for (low, high), (sources, references) in bins.items():
        hypotheses = translate_sentences(net, tokenizer, sources)
        per_bin[f"{low}-{high}"] = {"sentences": len(sources), "bleu": corpus_bleu(hypotheses, references)}
        all_hypotheses += hypotheses
        all_references += references
        print(f"  {model}: source length {low:2d}-{high:2d} words, BLEU {per_bin[f'{low}-{high}']['bleu']:5.1f}",
              flush=True)
    overall = corpus_bleu(all_hypotheses, all_references)
    return {
        "parameters": net.num_parameters(),
        "steps": trainer.step,
        "train_minutes": round(trainer.elapsed / 60, 2),
        "tokens_per_second": round(trainer.tokens_trained / trainer.step_seconds, 1) if trainer.step_seconds else None,
        "train_loss_last": trainer.history["train"][-1]["loss"] if trainer.history["train"] else None,
        "test_bleu": overall,
        "bleu_by_source_length": per_bin,
        "decode_seconds": round(time.monotonic() - started, 1),
        "backend": trainer.backend.name if model == "transformer" else "numpy",
    }


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    styles = {"rnnenc": ("RNNenc (fixed-length vector)", "s--"), "rnnsearch": ("RNNsearch (additive attention)", "o-"),
              "transformer": ("Transformer", "^-")}
    for model, result in results.items():
        lows = [int(key.split("-")[0]) for key in result["bleu_by_source_length"]]
        centres = [low + 2 for low in lows]
        bleu = [value["bleu"] for value in result["bleu_by_source_length"].values()]
        label, style = styles[model]
        axes.plot(centres, bleu, style, label=f"{label}: {result['steps']} steps")
    axes.set_xlabel("source sentence length (English words, bins of 5)")
    axes.set_ylabel("test BLEU")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(loc="center right", fontsize=8)  # the space between the curves
    axes.set_title("BLEU against sentence length, equal training time", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(results, args, info, elapsed):
    out = common.results_dir()
    record = {"benchmark": "why_attention", "minutes_per_model": args.minutes, "per_bin": args.per_bin,
              "seed": args.seed, "total_minutes": round(elapsed / 60, 1), "machine": info,
              "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "models": results}
    (out / "why_attention.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    bins = list(next(iter(results.values()))["bleu_by_source_length"])
    lines = [
        "# Why attention: BLEU against source length, equal wall-clock budget",
        "",
        f"`python bench/why_attention.py --minutes {args.minutes:g}` on {info['cpu_model']} "
        f"({info['usable_cpus']} usable CPUs, load average {info['load_average_1_5_15min']} at the start, "
        f"{record['load_average_at_end']} at the end), "
        f"{record['total_minutes']} minutes in all.",
        "",
        "| model | parameters | steps | tokens/s | test BLEU | " + " | ".join(bins) + " |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in bins) + " |",
    ]
    for model, result in results.items():
        cells = " | ".join(f"{result['bleu_by_source_length'][b]['bleu']:.1f}" for b in bins)
        lines.append(f"| {model} | {result['parameters']:,} | {result['steps']:,} | {result['tokens_per_second']:,.0f} "
                     f"| {result['test_bleu']:.1f} | {cells} |")
    lines += ["", "Columns after test BLEU: BLEU of the test sentences of that many English words "
              f"({next(iter(results.values()))['bleu_by_source_length'][bins[0]]['sentences']} per bin)."]
    (out / "why_attention.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"\nwrote {out / 'why_attention.json'}, {out / 'why_attention.md'} and {args.figure}")


def main(argv=None):
    args = parse_arguments(argv)
    models = [model for model in args.models.split(",") if model]
    unknown = [model for model in models if model not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.monotonic()
    info = common.machine_info()
    bins = test_by_length(args.per_bin)
    scratch = common.SCRATCH / "why-attention"
    results = {model: run_model(model, args, bins, scratch) for model in models}
    plot(results, Path(args.figure))
    write_report(results, args, info, time.monotonic() - started)


if __name__ == "__main__":
    main()
