"""Whole-model training throughput on the benchmark config, against torch.nn.Transformer.

    python bench/bench_train.py              # about 3 minutes; writes bench/results/<cpu>-<isa>/train.{md,json}
    python bench/bench_train.py --steps 4    # a quick look

The benchmark config is the `tatoeba` training config: D=256, 3+3 layers, 4 heads, F=1024,
a shared BPE vocabulary of 8000 with tied embeddings, dropout 0.1, label smoothing 0.1,
batches of about 4096 tokens, on the Tatoeba pairs in ../shared/data. One training step
is the whole recipe: forward, label-smoothed loss, backward, clipping, Adam.

Before timing, each backend's float32 step (the NumPy reference's too) is checked against
the same step in float64 on the NumPy reference, the truth up to float64 rounding. Each
tensor's relative difference must stay within a bound that float32 rounding sets:
1024·√N·u, with u = 2^-24 the unit roundoff and N the longest sum in the step (the
vocabulary's softmax, or a weight gradient's sum over every token of the batch: about
8,000 here, so the bound is about 5e-3). A sum of N rounded terms is off by about √N·u;
the factor 1024 leaves room for a dozen layers of products and normalizations that pass
errors on (measured: the float32 steps are 1e-4 to 3e-4 off); a wrong formula is off by
order 1. The benchmark never aborts on rounding noise.

Every implementation trains on the same batches, interleaved: batch i on numpy, then on
cython, then on PyTorch, then batch i + 1. A load change on the shared machine therefore
hits all of them alike, and the ratios are measured in one run. Throughput is training
tokens (source + target, without padding) over the summed step times, after one warm-up
step. The FLOP count is that of the matrix products actually computed (padding included),
×3 for forward + backward, set against the machine's float32 sgemm peak.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402

import common  # noqa: E402
from minitransformer import backends  # noqa: E402
from minitransformer.batching import Batcher, encode_pairs  # noqa: E402
from minitransformer.configs import get_config  # noqa: E402
from minitransformer.data import load_pairs  # noqa: E402
from minitransformer.layers.dropout import DropoutStream  # noqa: E402
from minitransformer.model import make_model  # noqa: E402
from minitransformer.optim import Adam  # noqa: E402
from minitransformer.step import Recipe, train_step  # noqa: E402

THREADS = 2
DATA = common.TATOEBA / "tatoeba-fra-eng-train.tsv"


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="timed steps per implementation")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    return parser.parse_args()


def training_flops(batch, config):
    """Multiply-add FLOPs of one forward pass over a padded batch, ×3 for the backward."""
    B, S = batch.src.shape
    T = batch.tgt_in.shape[1]
    D, F, V = config.d_model, config.d_ff, config.tgt_vocab_size
    encoder = 2 * B * S * (4 * D * D + 2 * D * F) + 4 * B * S * S * D
    decoder = (
        2 * B * T * (4 * D * D)  # self-attention projections
        + 4 * B * T * T * D  # self-attention core
        + 2 * B * T * (2 * D * D) + 2 * B * S * (2 * D * D)  # cross: q, o on T rows; k, v on S rows
        + 4 * B * T * S * D  # cross-attention core
        + 2 * B * T * (2 * D * F)  # feed-forward
    )
    output = 2 * B * T * D * V
    forward = config.n_encoder_layers * encoder + config.n_decoder_layers * decoder + output
    return 3 * forward


class OurStep:
    """One training step of minitransformer on a given backend."""

    def __init__(self, backend_name, model_config, train_config):
        self.model = make_model(model_config, seed=0, backend=backend_name)
        self.optimizer = Adam(self.model.params, beta1=0.9, beta2=0.98, eps=1e-9)
        self.recipe = Recipe.of(train_config)
        self.rng = DropoutStream(seed=0)  # the trainer's counter-based dropout stream
        self.steps = 0

    def __call__(self, batch):
        """The trainer's own step (minitransformer/step.py)."""
        self.steps += 1
        return train_step(self.model, batch, self.optimizer, self.steps, self.recipe, self.rng).loss


class TorchStep:
    """The same architecture and recipe in PyTorch: nn.Transformer with tied embeddings,
    in the config's norm placement."""

    def __init__(self, model_config, train_config):
        import torch
        from torch import nn

        torch.set_num_threads(THREADS)
        torch.manual_seed(0)
        c = model_config
        self.torch = torch
        self.pad = c.pad_id
        self.scale = c.d_model**0.5

        class Peer(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
                self.transformer = nn.Transformer(
                    d_model=c.d_model, nhead=c.n_heads, num_encoder_layers=c.n_encoder_layers,
                    num_decoder_layers=c.n_decoder_layers, dim_feedforward=c.d_ff,
                    dropout=c.dropout, batch_first=True, norm_first=c.pre_norm,
                )
                if not c.final_norm:  # nn.Transformer always adds one; the paper's post-norm has none
                    self.transformer.encoder.norm = None
                    self.transformer.decoder.norm = None
                self.generator = nn.Linear(c.d_model, c.tgt_vocab_size)
                self.generator.weight = self.embed.weight  # tied, as ours
                position = torch.arange(c.max_len)[:, None]
                frequency = torch.exp(-np.log(10000.0) * torch.arange(0, c.d_model, 2) / c.d_model)
                table = torch.zeros(c.max_len, c.d_model)
                table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
                self.register_buffer("positional", table)
                self.dropout = nn.Dropout(c.dropout)

        self.model = Peer()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
        self.smoothing = train_config.label_smoothing
        self.clip = train_config.clip_norm

    def __call__(self, batch):
        torch, model = self.torch, self.model
        src = torch.from_numpy(batch.src)
        tgt_in = torch.from_numpy(batch.tgt_in)
        tgt_out = torch.from_numpy(batch.tgt_out)
        S, T = src.shape[1], tgt_in.shape[1]
        x = model.dropout(model.embed(src) * self.scale + model.positional[:S])
        y = model.dropout(model.embed(tgt_in) * self.scale + model.positional[:T])
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        hidden = model.transformer(
            x, y, tgt_mask=future, src_key_padding_mask=src == self.pad,
            tgt_key_padding_mask=tgt_in == self.pad, memory_key_padding_mask=src == self.pad,
        )
        logits = model.generator(hidden)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
            ignore_index=self.pad, label_smoothing=self.smoothing,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
        self.optimizer.step()
        return float(loss)


def step_error(backend_name, model_config, train_config, batch, reference):
    """Largest relative difference of one float32 step's loss and gradients from ``reference``
    (a float64 NumPy step: the truth, up to float64 rounding). Dropout is off, since float32
    and float64 generators draw different masks."""
    model = make_model(model_config, seed=0, backend=backend_name)
    loss = model.loss_and_grads(batch.src, batch.tgt_in, batch.tgt_out, train_config.label_smoothing, None)
    loss_ref, grads_ref = reference
    worst = abs(loss - loss_ref) / abs(loss_ref)
    # the key biases' gradients are zero up to rounding (a softmax ignores a shift common to
    # a row), so each tensor's difference is measured against its norm plus a millionth
    # of the whole gradient's norm
    global_norm = float(np.sqrt(sum(float(np.sum(g**2)) for g in grads_ref.values())))
    for key, grad in grads_ref.items():
        difference = float(np.linalg.norm(model.grads[key].astype(np.float64) - grad))
        worst = max(worst, difference / (float(np.linalg.norm(grad)) + 1e-6 * global_norm))
    return worst


ROUNDING_ALLOWANCE = 1024  # the factor of the correctness bound (see the docstring)


def correctness_bound(batch, config):
    """1024·√N·u, N the longest sum of one step (see the docstring)."""
    B, S = batch.src.shape
    longest_sum = max(config.tgt_vocab_size, B * S, B * batch.tgt_in.shape[1], config.d_ff, config.d_model)
    return ROUNDING_ALLOWANCE * np.sqrt(longest_sum) * common.UNIT_ROUNDOFF_F32


def check_backends(names, model_config, train_config, batch):
    """{backend: largest relative difference of its float32 step from the float64 truth};
    SystemExit where one is beyond the rounding bound (correctness_bound)."""
    import dataclasses

    exact = make_model(dataclasses.replace(model_config, dtype="float64"), seed=0, backend="numpy")
    loss = exact.loss_and_grads(batch.src, batch.tgt_in, batch.tgt_out, train_config.label_smoothing, None)
    reference = (loss, exact.grads)
    bound = correctness_bound(batch, model_config)
    errors = {name: step_error(name, model_config, train_config, batch, reference) for name in names}
    for name, error in errors.items():
        if not error <= bound:
            raise SystemExit(
                f"bench_train: the {name} backend's float32 step is {error:.1e} from the float64 truth, "
                f"beyond the rounding bound {bound:.1e}"
            )
    return errors, bound


TARGET_VS_TORCH = 1.5  # training tokens/s of the Cython backend against torch.nn.Transformer
TARGET_OF_PEAK = 0.55  # the Cython step's GFLOP/s (the products it computes) as a fraction of sgemm's peak


def train_targets(rows, peer):
    if "cython" not in rows:
        return {"cython": "not measured (the Cython kernels are not built)"}
    ours = rows["cython"]
    verdicts = {}
    if peer:
        ratio = ours["tokens_per_second"] / rows[peer]["tokens_per_second"]
        verdicts["vs PyTorch"] = f"{'met' if ratio >= TARGET_VS_TORCH else 'NOT met'}: {ratio:.2f}× (wanted ≥ {TARGET_VS_TORCH}×)"
    fraction = ours["fraction_of_peak"]
    verdicts["of sgemm peak"] = (f"{'met' if fraction >= TARGET_OF_PEAK else 'NOT met'}: {100 * fraction:.0f} % "
                                 f"(wanted ≥ {100 * TARGET_OF_PEAK:.0f} %)")
    return verdicts


def main():
    args = parse_arguments()
    if not DATA.is_file():
        print(f"bench_train: {DATA} is absent; this benchmark needs the Tatoeba pairs in ../shared/data")
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    train_config = get_config("tatoeba")
    tokenizer, tokenizer_source = common.tatoeba_tokenizer(8000)
    model_config = train_config.model.with_vocabulary(tokenizer)
    pairs = load_pairs(DATA)
    examples, _ = encode_pairs(pairs, tokenizer, model_config.max_len, name=str(DATA))
    batcher = Batcher(examples, train_config.max_tokens, seed=0)
    order = batcher.epoch_batches(0)
    batches = [batcher.make_batch(order[i]) for i in range(args.steps + 1)]

    names = ["numpy"] + [name for name in ("cython",) if name in backends.available()]
    check, bound = check_backends(names, model_config, train_config, batches[0])
    steps = {name: OurStep(name, model_config, train_config) for name in names}
    peer = None
    if not args.no_torch:
        try:
            steps["torch"] = TorchStep(model_config, train_config)
            peer = "torch"
        except ImportError:
            print("bench_train: PyTorch is not installed; the peer column is left out", file=sys.stderr)

    load_before = os.getloadavg()
    peak = common.matmul_peak_gflops()
    seconds = {name: [] for name in steps}
    for name, step in steps.items():  # warm-up: first-touch allocations, BLAS threads, kernels
        step(batches[0])
    for i, batch in enumerate(batches[1:], start=1):
        for name, step in steps.items():
            start = time.perf_counter()
            loss = step(batch)
            seconds[name].append(time.perf_counter() - start)
            if not np.isfinite(loss):
                raise SystemExit(f"bench_train: {name} produced a non-finite loss at step {i}")
        print(f"step {i}/{args.steps}: " + ", ".join(f"{n} {seconds[n][-1]:.2f}s" for n in steps), file=sys.stderr)
    load_after = os.getloadavg()

    tokens = [b.n_src_tokens + b.n_tgt_tokens for b in batches[1:]]
    padded = [b.src.size + b.tgt_in.size for b in batches[1:]]
    flops = [training_flops(b, model_config) for b in batches[1:]]
    rows, table = {}, []
    for name in steps:
        total = sum(seconds[name])
        rows[name] = {
            "tokens_per_second": sum(tokens) / total,
            "median_step_seconds": statistics.median(seconds[name]),
            "gflops": sum(flops) / total / 1e9,
            "fraction_of_peak": sum(flops) / total / 1e9 / peak["peak_gflops"],
        }
    for name, row in rows.items():
        versus = f"{row['tokens_per_second'] / rows[peer]['tokens_per_second']:.2f}×" if peer else "n/a"
        table.append([name, f"{row['tokens_per_second']:,.0f}", f"{row['median_step_seconds']:.3f}",
                      versus, f"{row['gflops']:.1f}", f"{100 * row['fraction_of_peak']:.0f} %"])
    payload = {
        "machine": common.machine_info(),
        "config": model_config.to_dict(),
        "max_tokens": train_config.max_tokens,
        "steps": args.steps,
        "tokens_per_batch_mean": statistics.mean(tokens),
        "padded_tokens_per_batch_mean": statistics.mean(padded),
        "matmul_peak": peak,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "check_max_relative_error": check,
        "check_bound": bound,
        "targets": train_targets(rows, peer),
        "results": rows,
        "tokenizer": tokenizer_source,
    }
    common.write_json("train", payload)
    text = f"""# Whole-model training throughput

Written by `python bench/bench_train.py --steps {args.steps}` on {payload['machine']['date_utc']}.
Benchmark config: D=256, 3+3 layers, 4 heads, F=1024, {"pre" if model_config.pre_norm else "post"}-norm (both models), shared vocabulary {model_config.src_vocab_size}, tied
embeddings, dropout 0.1, label smoothing 0.1, batches of ≤ {train_config.max_tokens} padded tokens
(on average {statistics.mean(tokens):.0f} real tokens) from the Tatoeba training pairs. float32.
{args.steps} timed steps per implementation after one warm-up, interleaved batch by batch.

Machine: {common.machine_line(payload['machine'], peak['peak_gflops'])}; NumPy {np.__version__},
PyTorch {payload['machine'].get('torch')} on {THREADS} threads.
Load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}.

{common.markdown_table(['implementation', 'training tokens/s', 'median step s', 'vs PyTorch', 'GFLOP/s', 'of sgemm peak'], table)}

Checked before timing: loss and every gradient of one float32 step (dropout off), largest
relative difference from the same step in float64 on the NumPy reference:
{', '.join(f'{k} {v:.1e}' for k, v in check.items())} (bound 1024·√N·u = {bound:.1e}).

Targets: {'; '.join(f'{k}: {v}' for k, v in payload['targets'].items())}.
"""
    common.write_text("train.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
