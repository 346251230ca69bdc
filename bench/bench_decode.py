"""Decoding speed: sentences per second, greedy and beam search, with and without the KV cache.

    .venv/bin/python bench/bench_decode.py               # writes bench/results/<cpu>-<isa>/decode.{md,json}
    .venv/bin/python bench/bench_decode.py --quick       # fewer sentences: does it run?
    .venv/bin/python bench/bench_decode.py --threads 1   # BLAS and torch threads (default 2)

The model is the benchmark config (D=256, 3+3 layers, 4 heads, F=1024, V=8000, float32)
with RANDOM weights: the speed of a step does not depend on the values of the weights.
What does depend on them is when each sentence says </s>, and a random model never does.
So every batch runs a fixed number of steps: the longest French reference of its sentences
(in pieces, plus one for </s>), the steps a model that translates perfectly would need.
A trained model also lets finished sentences leave the batch (decode.py does that), which
this benchmark cannot show: real decoding is somewhat faster than measured here.

Sources: English sentences of ../shared/data/tatoeba-fra-eng-valid.tsv (1–9 words),
encoded with a SentencePiece tokenizer of 8000 pieces trained on the Tatoeba training file
(runs/tatoeba/tokenizer when a run has trained one; otherwise trained once into
bench/scratch/); sorted by length and cut into batches of 64, as `translate --input` does.
Without the data file, random ids with Tatoeba-like lengths (5–14) stand in.

Before any timing, the cached and uncached decoders must agree token for token, greedy and
beam, on the first batch. The peer is torch.nn.Transformer of the same shape, greedy in
batches of 64 without a cache (each step reruns the decoder on the whole prefix), in eval
mode under torch.no_grad, when torch is importable. Every time is the best of --repeats
runs, taken round-robin across the methods: on a shared machine other processes only ever
make a run slower, and they should slow every method alike.
"""

import argparse
import os
import sys


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 sentences, one repeat")
    parser.add_argument("--threads", type=int, default=2, help="BLAS and torch threads (2)")
    parser.add_argument("--repeats", type=int, default=3, help="time each method this often, keep the best (3)")
    parser.add_argument(
        "--backend", default="numpy", help="attention core: numpy (default), cython, cupy or auto"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    return parser.parse_args()


ARGS = parse_arguments() if __name__ == "__main__" else None
if ARGS is not None:
    # the thread count must be fixed before NumPy loads its BLAS
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)

import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import common  # noqa: E402  (bench/common.py)
from minitransformer.config import ModelConfig  # noqa: E402
from minitransformer.data import load_pairs  # noqa: E402
from minitransformer.decode import beam_search, greedy_decode  # noqa: E402
from minitransformer.model import make_model  # noqa: E402
from minitransformer.tokenizer import Tokenizer  # noqa: E402

DATA = common.TATOEBA
BATCH = 64
VOCAB = 8000
PAD, UNK, BOS, EOS = Tokenizer.pad_id, Tokenizer.unk_id, Tokenizer.bos_id, Tokenizer.eos_id
CONFIG = ModelConfig(
    src_vocab_size=VOCAB,
    tgt_vocab_size=VOCAB,
    d_model=256,
    n_heads=4,
    d_ff=1024,
    n_encoder_layers=3,
    n_decoder_layers=3,
    dropout=0.0,
    max_len=128,
    dtype="float32",
)


# --- the sentences -------------------------------------------------------------------------


def load_sentences(count):
    """-> (source ids, French reference lengths in pieces, a description of where they came from)."""
    valid = DATA / "tatoeba-fra-eng-valid.tsv"
    if valid.is_file() and (DATA / "tatoeba-fra-eng-train.tsv").is_file():
        tokenizer, where = common.tatoeba_tokenizer(VOCAB)
        first = {}
        for english, french in load_pairs(valid):
            first.setdefault(english, french)  # one reference per English sentence
        pairs = list(first.items())[:count]
        sources = [tokenizer.encode_src(english) for english, _ in pairs]
        target_lengths = [len(tokenizer.encode_tgt(french)) for _, french in pairs]
        return sources, target_lengths, f"{len(sources)} English sentences of {valid.name}, tokenizer {where}"
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 15, size=count)
    sources = [list(rng.integers(4, VOCAB, size=length)) for length in lengths]
    target_lengths = [int(round(1.2 * length)) for length in lengths]
    return sources, target_lengths, f"{count} random sentences of 5–14 ids (no Tatoeba data found)"


def make_batches(sources, target_lengths):
    """Sorted by source length, batches of 64: (src (B, S) padded, steps to decode)."""
    order = sorted(range(len(sources)), key=lambda i: (len(sources[i]), i))
    batches = []
    for start in range(0, len(order), BATCH):
        rows = order[start : start + BATCH]
        src = np.full((len(rows), max(len(sources[i]) for i in rows)), PAD, dtype=np.int64)  # (B, S)
        for row, i in enumerate(rows):
            src[row, : len(sources[i])] = sources[i]
        steps = max(target_lengths[i] for i in rows) + 1  # the longest reference, and its </s>
        batches.append((src, steps))
    return batches


# --- timing --------------------------------------------------------------------------------


def time_methods(methods, repeats):
    """methods: (name, decode(src, steps), batches, repeats or None for the default).

    The repeats go round-robin, one run of each method in turn, so that a burst of load
    from other processes slows every method alike instead of one; each keeps its best."""
    best = {name: math.inf for name, _, _, _ in methods}
    for repeat in range(max(count or repeats for _, _, _, count in methods)):
        for name, decode, batches, count in methods:
            if repeat >= (count or repeats):
                continue
            started = time.perf_counter()
            for src, steps in batches:
                decode(src, steps)
            best[name] = min(best[name], time.perf_counter() - started)
    results = []
    for name, _, batches, _ in methods:
        n_sentences = sum(len(src) for src, _ in batches)
        rate = n_sentences / best[name]
        print(f"{name:<38} {n_sentences:>4} sentences {best[name]:7.2f} s {rate:8.1f} sentences/s", file=sys.stderr)
        results.append({"method": name, "sentences": n_sentences, "seconds": best[name], "sentences_per_second": rate})
    return results


def torch_peer(threads):
    """torch.nn.Transformer of the same shape, and its greedy decoder without a cache; None without torch."""
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    D = CONFIG.d_model
    table = torch.zeros(CONFIG.max_len, D)
    position = torch.arange(CONFIG.max_len, dtype=torch.float32)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, D, 2, dtype=torch.float32) / D)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)

    class Peer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embed = torch.nn.Embedding(VOCAB, D)
            self.tgt_embed = torch.nn.Embedding(VOCAB, D)
            self.transformer = torch.nn.Transformer(
                d_model=D,
                nhead=CONFIG.n_heads,
                num_encoder_layers=CONFIG.n_encoder_layers,
                num_decoder_layers=CONFIG.n_decoder_layers,
                dim_feedforward=CONFIG.d_ff,
                dropout=0.0,
                batch_first=True,
            )
            self.generator = torch.nn.Linear(D, VOCAB)

        def embed(self, embedding, ids):
            return embedding(ids) * math.sqrt(D) + table[: ids.shape[1]]

    peer = Peer().eval()

    def greedy(src, steps):
        with torch.no_grad():
            src = torch.from_numpy(src)
            padding = src == PAD
            memory = peer.transformer.encoder(peer.embed(peer.src_embed, src), src_key_padding_mask=padding)
            ys = torch.full((src.shape[0], 1), BOS, dtype=torch.long)
            finished = torch.zeros(src.shape[0], dtype=torch.bool)
            for _ in range(steps):
                causal = torch.nn.Transformer.generate_square_subsequent_mask(ys.shape[1])
                hidden = peer.transformer.decoder(
                    peer.embed(peer.tgt_embed, ys), memory, tgt_mask=causal, memory_key_padding_mask=padding
                )
                next_ids = peer.generator(hidden[:, -1]).argmax(dim=-1)
                ys = torch.cat([ys, next_ids[:, None]], dim=1)
                finished |= next_ids == EOS
                if bool(finished.all()):
                    break
            return ys

    return greedy, torch.__version__


def main():
    from minitransformer import backends

    count = 128 if ARGS.quick else 256
    repeats = 1 if ARGS.quick else ARGS.repeats
    sources, target_lengths, where = load_sentences(count)
    batches = make_batches(sources, target_lengths)
    backend = backends.get(ARGS.backend)
    model = make_model(CONFIG, seed=0, backend=backend)
    load_before = os.getloadavg()
    print(f"backend {backend.name}, {ARGS.threads} thread(s), {where}", file=sys.stderr)

    # 1. the cache must change nothing, before anything is timed
    src, steps = batches[0]
    greedy_cached = greedy_decode(model, src, BOS, EOS, steps)
    greedy_agrees = greedy_cached == greedy_decode(model, src, BOS, EOS, steps, use_cache=False)
    beam_cached = beam_search(model, src[:16], BOS, EOS, steps, beam_size=4)
    beam_agrees = beam_cached == beam_search(model, src[:16], BOS, EOS, steps, beam_size=4, use_cache=False)
    if not (greedy_agrees and beam_agrees):
        sys.exit("bench_decode: the cached and uncached decoders disagree; not timing a wrong decoder")
    print("cached and uncached decoders agree token for token (greedy: 64 sentences, beam 4: 16)", file=sys.stderr)

    # 2. the timings: a fraction of the sentences for the slow methods, the same batches for all
    fewer = batches[: max(1, len(batches) // 2)]
    methods = [
        ("greedy, KV cache", lambda s, n: greedy_decode(model, s, BOS, EOS, n), batches, None),
        ("greedy, no cache", lambda s, n: greedy_decode(model, s, BOS, EOS, n, False), fewer, 1),
        ("beam 4, KV cache", lambda s, n: beam_search(model, s, BOS, EOS, n, 4), fewer, None),
        ("beam 4, no cache", lambda s, n: beam_search(model, s, BOS, EOS, n, 4, 0.6, False), fewer[:1], 1),
    ]
    peer, torch_version = (None, None) if ARGS.no_torch else torch_peer(ARGS.threads)
    if peer is not None:
        peer(*batches[0])  # warm-up
        methods.append(("torch.nn.Transformer greedy, no cache", peer, batches, None))
    results = time_methods(methods, repeats)
    load_after = os.getloadavg()

    # 3. the reports
    peer_rate = results[-1]["sentences_per_second"] if peer is not None else None
    for result in results:
        result["vs_torch"] = None if peer_rate is None else result["sentences_per_second"] / peer_rate
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{common.cpu_model()} ({common.cpu_id() or platform.machine()}), {os.cpu_count()} CPUs, "
        f"kernels on the {common.isa_path()} path, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "numpy": np.__version__,
        "torch": torch_version,
        "backend": backend.name,
        "threads": ARGS.threads,
        "config": CONFIG.to_dict(),
        "weights": "random (seed 0)",
        "batch_size": BATCH,
        "sentences": where,
        "steps_per_batch": [steps for _, steps in batches],
        "cache_agrees_with_recomputation": {"greedy": greedy_agrees, "beam": beam_agrees},
        "results": results,
    }
    results_dir = common.results_dir()
    (results_dir / "decode.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Decoding speed",
        "",
        f"`bench/bench_decode.py`, {record['date']}: {record['machine']}; NumPy {np.__version__}"
        + (f", torch {torch_version}" if torch_version else ", torch not installed")
        + f"; attention backend `{backend.name}`; {ARGS.threads} BLAS/torch thread(s); best of {repeats} run(s).",
        "",
        "Model: D=256, 3+3 layers, 4 heads, F=1024, V=8000, float32, **random weights** (a step costs the same",
        "whatever the weights). Sentences: " + where + f"; batches of {BATCH}, sorted by length. A random model",
        "never says </s>, so each batch decodes exactly as many steps as its longest French reference needs",
        f"(steps per batch: {', '.join(map(str, record['steps_per_batch']))}). Before timing, the cached and",
        "uncached decoders were checked to give identical tokens (greedy on 64 sentences, beam 4 on 16).",
        "",
        "| method | sentences | seconds | sentences/s | vs torch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        versus = "" if result["vs_torch"] is None else f"{result['vs_torch']:.2f}×"
        lines.append(
            f"| {result['method']} | {result['sentences']} | {result['seconds']:.2f} | "
            f"{result['sentences_per_second']:.1f} | {versus} |"
        )
    lines += [
        "",
        f"Load average (1 min) before and after: {load_before[0]:.1f}, {load_after[0]:.1f}, on {os.cpu_count()} CPUs. Every",
        "figure is the best of its repeats, taken round-robin across the methods. When the load exceeds the",
        "CPUs, several BLAS or torch threads per process oversubscribe them and spin: every method slows down",
        "3–10× and erratically (run with --threads 1 there). Compare figures within one run only.",
        "",
    ]
    (results_dir / "decode.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {results_dir / 'decode.md'} and {results_dir / 'decode.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
