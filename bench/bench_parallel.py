"""Attention across processes: data-parallel throughput, communication, ring attention's memory.

    python bench/bench_parallel.py              # about 4 minutes; writes bench/results/<cpu>-<isa>/parallel.{md,json}
    python bench/bench_parallel.py --steps 3 --lengths 512 1024   # a quick look

What it measures (MPI from pip: pip install -e '.[mpi]'; every MPI part runs under
minitransformer/parallel/launch.py):

  1. training tokens/s on the benchmark config (the `tatoeba` training config, float32,
     the Cython backend), one rank on 2 threads against 2 ranks on 1 thread each, on the
     same batches (a short run: --steps steps after one warm-up, two rounds alternating the
     layouts, so that a change of load hits both). 2 ranks compute the same step as 1: the
     gradients are all-reduced and each rank takes half the batch's tokens;
  2. the share of a 2-rank step spent in the gradient all-reduce (waiting for the other
     rank included: an imbalance of the shares shows up here as communication);
  3. the all-reduce's bandwidth between 2 ranks of this machine (shared memory), against
     message size, as algorithm bandwidth (bytes / time) and bus bandwidth
     (2(P − 1)/P · bytes / time, what the ring all-reduce moves over each link);
  4. ring attention over MPI (forward + backward, B=1, H=4, Dh=64, float32, padding mask),
     time and peak NumPy memory per rank against the sequence length T, for 1, 2 and 4 ranks
     (4 oversubscribe the 2 cores: their times mean nothing, their memory does),
     and the reference core's peak at P=1 (it holds the whole T×T matrix of weights);
  5. on paper, from the parameter count: the bytes each machine sends per step in a ring
     all-reduce, and the efficiency predicted at 8, 64 and 512 machines at two stated
     network bandwidths, from the measured single-rank compute time of a step;
  6. the sequence-parallel training step (parallel/sequence_parallel.py: the encoder's
     positions split over the ranks, its self-attention on the ring) on a model of D=128,
     2 encoder layers and 1 decoder layer, one source of S positions and a target of 32,
     float32: time and peak NumPy memory per rank against S, for 1, 2 and 4 ranks, the
     encoder's part (forward and backward of the rank's block) and the whole step, and one
     process's ordinary step (the fused core, whose (H, S, S) weights dominate) beside them.

The machine is shared with other jobs and has 2 cores: the absolute numbers are noisy and
the ratios only roughly so. The load average before and after is recorded.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402

import common  # noqa: E402

DATA = common.TATOEBA / "tatoeba-fra-eng-train.tsv"
BATCHES = common.SCRATCH / "parallel-batches.npz"
# the networks of the prediction: commodity Ethernet and a cluster's InfiniBand, each with
# its per-message latency
NETWORKS = {"10 Gbit/s Ethernet": (1.25e9, 20e-6), "100 Gbit/s InfiniBand": (12.5e9, 2e-6)}
MACHINES = (8, 64, 512)
# the step of the same model and batch on a GPU, for the prediction: 4096 tokens × ~6 ×
# 7.6M parameters ≈ 0.2 TFLOP, a few ms of a large GPU's peak; 30 ms leaves room for the rest
GPU_STEP_SECONDS = 0.030


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per layout and round")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192],
                        help="sequence lengths T of the ring attention measurement")
    parser.add_argument("--sequence-lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096],
                        help="source lengths S of the sequence-parallel step")
    parser.add_argument("--only", choices=["allreduce", "sequence"],
                        help="measure only this part again, keeping the rest of the last parallel.json")
    parser.add_argument("--worker", choices=["train", "allreduce", "ring", "sequence"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- the workers: run under launch.py (or alone, for one rank) --------------------------------


def bench_config():
    from minitransformer.configs import get_config

    return get_config("tatoeba")


def load_batches():
    from minitransformer.batching import Batch

    saved = np.load(BATCHES)
    count = int(saved["count"])
    return [Batch(saved[f"src{i}"], saved[f"tgt_in{i}"], saved[f"tgt_out{i}"], np.arange(saved[f"src{i}"].shape[0]),
                  int(saved[f"n_src{i}"]), int(saved[f"n_tgt{i}"])) for i in range(count)], json.loads(str(saved["model"]))


def train_worker(args):
    """Steps of the benchmark config: one process alone, or a rank of a data-parallel world."""
    from minitransformer.config import ModelConfig
    from minitransformer.layers.dropout import DropoutStream
    from minitransformer.model import make_model
    from minitransformer.optim import Adam
    from minitransformer.parallel.data_parallel import DataParallelStep
    from minitransformer.parallel.trainer import rank_stream_seed
    from minitransformer.parallel.world import get_world
    from minitransformer.step import Recipe, train_step, whole_batch_loss_and_grads

    world = get_world()
    batches, model_fields = load_batches()
    config = bench_config()
    model = make_model(ModelConfig(**model_fields), seed=0, backend="cython")
    optimizer = Adam(model.params, config.beta1, config.beta2, config.eps)
    rng = DropoutStream(rank_stream_seed(0, world.rank))
    # the step that trains: train_step, with the data-parallel forward-backward on 2 ranks
    step = DataParallelStep(world, model) if world.size > 1 else None
    loss_and_grads = whole_batch_loss_and_grads if step is None else step.loss_and_grads
    records = []
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        train_step(model, batch, optimizer, index + 1, Recipe.of(config), rng, loss_and_grads=loss_and_grads)
        seconds = time.perf_counter() - started
        if index > 0:  # the first is the warm-up
            records.append({"seconds": seconds, "communicate_seconds": 0.0 if step is None else step.communicate_seconds,
                            "tokens": batch.n_src_tokens + batch.n_tgt_tokens})
    if world.rank == 0:
        Path(args.out).write_text(json.dumps({"records": records, "parameters": model.num_parameters(),
                                              "gradient_bytes": sum(g.nbytes for g in model.grads.values())}))


def allreduce_worker(args):
    """Median time of an all-reduce of each size, in float32."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    results = []
    for exponent in range(10, 27, 2):  # 1 KiB … 64 MiB
        nbytes = 2**exponent
        buffer = np.ones(nbytes // 4, dtype=np.float32)
        repeats = max(3, min(50, (2**24) // nbytes))
        comm.Allreduce(MPI.IN_PLACE, buffer)  # warm-up
        times = []
        for _ in range(repeats):
            comm.Barrier()
            started = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer)
            times.append(time.perf_counter() - started)
        # the best of the repeats measures the link; the median, on a shared machine, mostly
        # measures how long a rank waited to be scheduled
        best = comm.allreduce(float(np.min(times)), op=MPI.MAX)
        median = comm.allreduce(float(np.median(times)), op=MPI.MAX)
        results.append({"bytes": nbytes, "seconds": best, "median_seconds": median, "repeats": repeats})
    if comm.Get_rank() == 0:
        Path(args.out).write_text(json.dumps(results))


def timed_and_peak(comm, function, repeats=3):
    """(the best of ``repeats`` timed calls after a warm-up, slowest rank; the peak NumPy
    bytes of another call, largest rank)."""
    from mpi4py import MPI

    function()
    times = []
    for _ in range(repeats):
        comm.Barrier()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    comm.Barrier()
    peak = common.peak_numpy_bytes(function)
    return comm.allreduce(min(times), op=MPI.MAX), comm.allreduce(peak, op=MPI.MAX)


def ring_worker(args):
    """Ring attention forward + backward per T: time and peak NumPy bytes on each rank."""
    from mpi4py import MPI

    from minitransformer.layers.attention import attention_backward, attention_forward
    from minitransformer.parallel.ring_attention import block_bounds
    from minitransformer.parallel.ring_mpi import ring_attention_backward_mpi, ring_attention_forward_mpi

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    batch, heads, head_dim = 1, 4, 64
    results = []
    for length in args.lengths:
        start, stop = block_bounds(length, size)[rank]
        rng = np.random.default_rng([length, rank])
        q, k, v, dout = (rng.standard_normal((batch, heads, stop - start, head_dim)).astype(np.float32)
                         for _ in range(4))  # (B, H, Tr, Dh): only this rank's block is ever made
        key_valid = np.ones((batch, stop - start), dtype=bool)  # (B, Tr)
        key_valid[:, -3:] = rank != size - 1  # a little padding at the end of the sequence

        def ring():
            out, lse = ring_attention_forward_mpi(comm, q, k, v, length, key_valid)
            ring_attention_backward_mpi(comm, dout, q, k, v, out, lse, length, key_valid)

        seconds, peak = timed_and_peak(comm, ring, repeats=2)
        entry = {"T": length, "ranks": size, "seconds": seconds, "peak_bytes_per_rank": peak,
                 "block_bytes": comm.allreduce(q.nbytes, op=MPI.MAX)}  # one (B, H, Tr, Dh) array
        if size == 1 and length <= 4096:
            mask = key_valid[:, None, None, :]  # (B, 1, 1, T)

            def plain():
                out, probs = attention_forward(q, k, v, mask)
                attention_backward(dout, q, k, v, probs)

            entry["reference_core_peak_bytes"] = common.peak_numpy_bytes(plain)
        results.append(entry)
    if rank == 0:
        Path(args.out).write_text(json.dumps(results))


SEQUENCE_MODEL = dict(src_vocab_size=1000, tgt_vocab_size=1000, d_model=128, n_heads=4, d_ff=512, n_encoder_layers=2,
                      n_decoder_layers=1, dropout=0.1, share_embeddings=True, dtype="float32")
SEQUENCE_TARGET = 32


def sequence_case(length):
    """The sequence-parallel benchmark's model and batch: one source of ``length`` positions
    (the last 5 padding, so the mask is real), a target of SEQUENCE_TARGET."""
    from minitransformer.batching import Batch
    from minitransformer.config import ModelConfig
    from minitransformer.model import make_model

    rng = np.random.default_rng(length)
    model = make_model(ModelConfig(max_len=length, **SEQUENCE_MODEL), seed=0, backend="cython")
    src = rng.integers(4, 1000, size=(1, length))  # (B, S)
    src[:, -5:] = 0
    tgt = rng.integers(4, 1000, size=(1, SEQUENCE_TARGET + 1))  # (B, T + 1)
    return model, Batch(src, tgt[:, :-1], tgt[:, 1:], np.arange(1), length - 5, SEQUENCE_TARGET)


def encoder_part(model, batch, rng, link):
    """This rank's encoder forward and backward (what sequence parallelism splits), with a
    fixed ∂L/∂memory in place of the decoder's."""
    from minitransformer.model import encode_backward
    from minitransformer.parallel.ring_attention import block_bounds
    from minitransformer.parallel.sequence_parallel import SequenceBlock

    bounds = block_bounds(batch.src.shape[1], link.size)
    start, stop = bounds[link.rank]
    block = SequenceBlock(model.encoder_backend, link, bounds)
    memory, _, cache = model.encode(batch.src[:, start:stop], rng, offset=start, backend=block)  # (B, Sr, D)
    encode_backward(model, np.ones_like(memory), cache, {})


def sequence_worker(args):
    """The sequence-parallel step per S on this world's ranks; one process's ordinary step at P = 1."""
    from mpi4py import MPI

    from minitransformer.layers.dropout import DropoutStream
    from minitransformer.parallel.links import MPILink
    from minitransformer.parallel.sequence_parallel import sequence_parallel_loss_and_grads
    from minitransformer.parallel.world import MPIWorld

    comm = MPI.COMM_WORLD
    link = MPILink(MPIWorld(comm))  # MPI even for one rank: the same code at every P
    results = []
    for length in args.sequence_lengths:
        model, batch = sequence_case(length)
        entry = {"S": length, "ranks": link.size}
        entry["encoder_seconds"], entry["encoder_peak_bytes"] = timed_and_peak(
            comm, lambda: encoder_part(model, batch, DropoutStream(0), link))
        entry["step_seconds"], entry["step_peak_bytes"] = timed_and_peak(
            comm, lambda: sequence_parallel_loss_and_grads(model, batch, 0.1, DropoutStream(0), link))
        if link.size == 1 and length <= 4096:  # the ordinary step of one process, the fused core
            entry["single_step_seconds"], entry["single_step_peak_bytes"] = timed_and_peak(
                comm, lambda: model.loss_and_grads(batch.src, batch.tgt_in, batch.tgt_out, 0.1, DropoutStream(0)))
        results.append(entry)
        if link.rank == 0:
            print(f"bench_parallel: sequence parallel S={length} P={link.size}: {entry}", flush=True, file=sys.stderr)
    if link.rank == 0:
        Path(args.out).write_text(json.dumps(results))


def sequence_parallel_runs(lengths):
    """The sequence worker on 1, 2 and 4 ranks (4 oversubscribe 2 cores: only memory counts)."""
    extra = ["--sequence-lengths", *map(str, lengths)]
    runs = run_worker("sequence", 1, 1, extra) + run_worker("sequence", 2, 1, extra) + run_worker("sequence", 4, 1, extra)
    return sorted(runs, key=lambda entry: (entry["S"], entry["ranks"]))


def sequence_report(sequence):
    """The markdown section of the sequence-parallel step."""
    model = SEQUENCE_MODEL
    lines = [f"## The sequence-parallel training step (D={model['d_model']}, H={model['n_heads']}, "
             f"F={model['d_ff']}, {model['n_encoder_layers']} encoder layers + {model['n_decoder_layers']} decoder "
             f"layer, B=1, a target of {SEQUENCE_TARGET}, float32, Cython backend, dropout 0.1)", ""]
    rows = []
    for entry in sequence:
        single = entry.get("single_step_peak_bytes")
        rows.append([entry["S"], entry["ranks"], f"{entry['encoder_seconds']:.2f}",
                     f"{entry['encoder_peak_bytes'] / 2**20:.1f}", f"{entry['step_seconds']:.2f}",
                     f"{entry['step_peak_bytes'] / 2**20:.1f}",
                     "—" if single is None else f"{entry['single_step_seconds']:.2f}",
                     "—" if single is None else f"{single / 2**20:.0f}"])
    lines += [common.markdown_table(["S", "ranks", "encoder part (s)", "encoder peak MiB per rank", "whole step (s)",
                                     "whole step peak MiB per rank", "one process, fused core (s)",
                                     "one process peak MiB"], rows), ""]
    lines += ["The encoder part is a rank's forward and backward of its block of positions (embedding at its "
              "global positions, both layers with self-attention on the ring, the messages included), with a fixed "
              "∂L/∂memory standing in for the decoder's; the whole step adds the all-gather of the memory, the "
              "replicated decoder and the all-reduce of the encoder's gradients. Peak NumPy memory above what was "
              "held before the call (tracemalloc), the largest rank's; times the slowest rank's, best of 3. The "
              "encoder's peak falls as S/P (every activation of a rank is a block of S/P positions, and the ring "
              "holds key/value blocks, never an S × S matrix); the whole step keeps a part that does not fall, the "
              "gathered memory and the decoder's cross-attention over all S positions. One process's ordinary step "
              "holds the (H, S, S) weights of every encoder layer: quadratic. 4 ranks oversubscribe the 2 cores, "
              "so their times mean nothing.", ""]
    return lines


# --- the driver -------------------------------------------------------------------------------


def prepare_batches(count):
    """``count`` batches of the benchmark config from the Tatoeba training file, saved for the workers."""
    from minitransformer.batching import Batcher, encode_pairs
    from minitransformer.data import load_pairs

    config = bench_config()
    tokenizer, origin = common.tatoeba_tokenizer(config.vocab_size)
    examples, _ = encode_pairs(load_pairs(DATA), tokenizer, config.model.max_len, name=str(DATA))
    batcher = Batcher(examples, config.max_tokens, seed=0, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
                      eos_id=tokenizer.eos_id)
    model = config.model.with_vocabulary(tokenizer)
    arrays = {"count": count, "model": json.dumps(model.to_dict())}
    for i, indices in enumerate(batcher.epoch_batches(0)[:count]):
        batch = batcher.make_batch(indices)
        arrays.update({f"src{i}": batch.src, f"tgt_in{i}": batch.tgt_in, f"tgt_out{i}": batch.tgt_out,
                       f"n_src{i}": batch.n_src_tokens, f"n_tgt{i}": batch.n_tgt_tokens})
    common.SCRATCH.mkdir(parents=True, exist_ok=True)
    np.savez(BATCHES, **arrays)
    return origin


def run_worker(kind, ranks, threads, extra=()):
    """Run this script as a worker on ``ranks`` ranks of ``threads`` threads -> its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                   PYTHONPATH=str(REPO))
        script = [str(Path(__file__).resolve()), "--worker", kind, "--out", str(out), *extra]
        if ranks == 1 and kind == "train":
            command = [sys.executable, *script]
        else:
            command = [sys.executable, "-m", "minitransformer.parallel.launch", "-n", str(ranks), *script]
        subprocess.run(command, env=env, check=True, cwd=REPO)
        return json.loads(out.read_text())


def throughput(rounds, steps):
    layouts = {"1 rank × 2 threads": (1, 2), "2 ranks × 1 thread": (2, 1)}
    records = {name: [] for name in layouts}
    parameters = gradient_bytes = None
    for _ in range(rounds):
        for name, (ranks, threads) in layouts.items():
            result = run_worker("train", ranks, threads)
            records[name] += result["records"]
            parameters, gradient_bytes = result["parameters"], result["gradient_bytes"]
    summary = {}
    for name, entries in records.items():
        seconds = sum(entry["seconds"] for entry in entries)
        summary[name] = {
            "steps": len(entries),
            "tokens_per_second": sum(entry["tokens"] for entry in entries) / seconds,
            "median_step_seconds": float(np.median([entry["seconds"] for entry in entries])),
            "median_compute_seconds": float(np.median([entry["seconds"] - entry["communicate_seconds"]
                                                       for entry in entries])),
            "communicate_share": sum(entry["communicate_seconds"] for entry in entries) / seconds,
        }
    return summary, parameters, gradient_bytes


def predictions(gradient_bytes, compute_seconds):
    """Weak scaling (each machine keeps its batch): efficiency = compute / (compute + all-reduce),
    with the ring all-reduce's time 2(P − 1)/P · bytes / bandwidth + 2(P − 1)·latency, no overlap.
    compute_seconds: {what computes: seconds of one machine's step}."""
    rows = []
    for network, (bandwidth, latency) in NETWORKS.items():
        for machines in MACHINES:
            sent = 2 * (machines - 1) / machines * gradient_bytes  # bytes each machine sends (and receives)
            seconds = sent / bandwidth + 2 * (machines - 1) * latency
            rows.append({"network": network, "machines": machines, "bytes_sent_per_machine": sent,
                         "allreduce_seconds": seconds,
                         "efficiency": {name: step / (step + seconds) for name, step in compute_seconds.items()}})
    return rows


def report(info, peak, train, parameters, gradient_bytes, allreduce, ring, paper, compute, sequence=None):
    lines = [f"# Data and sequence parallel ({common.machine_line(info, peak)})", ""]
    lines += [
        "Measured by `python bench/bench_parallel.py` (MPICH from its wheel, shared memory between the ranks). "
        "**The machine is shared with other jobs and has 2 cores**: every number moved by a few to tens of per "
        f"cent between runs. Load average (1, 5, 15 min) before: {info['load_average_1_5_15min']}"
        + (f", after: {[round(x, 2) for x in info['load_average_after']]}" if info.get("load_average_after") else "")
        + " (other jobs, niced, ran on the machine during the run).", "",
        "## Training throughput, the benchmark config (tatoeba, float32, Cython backend)", "",
        f"{parameters:,} parameters, {gradient_bytes / 2**20:.1f} MiB of gradients all-reduced per step in one buffer.",
        "",
    ]
    rows = [[name, s["steps"], f"{s['tokens_per_second']:,.0f}", f"{s['median_step_seconds']:.2f}",
             f"{100 * s['communicate_share']:.1f} %"] for name, s in train.items()]
    lines += [common.markdown_table(["layout", "steps", "tokens/s", "median step (s)", "share in the all-reduce"], rows), ""]
    lines += ["The all-reduce share includes waiting for the other rank, so an imbalance between the two halves "
              "of a batch (tokens are balanced, padding and the kernels' speed are not) counts as communication.", ""]
    lines += ["## All-reduce between 2 ranks of this machine", ""]
    rows = [[f"{entry['bytes'] / 1024:,.0f} KiB", f"{1e6 * entry['seconds']:,.0f}",
             f"{1e6 * entry.get('median_seconds', entry['seconds']):,.0f}",
             f"{entry['bytes'] / entry['seconds'] / 1e9:.2f}", f"{entry['bytes'] / entry['seconds'] / 1e9:.2f}"]
            for entry in allreduce]  # P = 2: bus bandwidth 2(P-1)/P = 1 × algorithm bandwidth
    lines += [common.markdown_table(["message", "best time (µs)", "median time (µs)", "algorithm GB/s (best)",
                                     "bus GB/s (best)"], rows), ""]
    lines += ["The best of the repeats measures the link (shared memory); the median, on this machine, mostly "
              "measures how long a rank waited for a core.", ""]
    lines += ["## Ring attention over MPI, forward + backward (B=1, H=4, Dh=64, float32, padding mask)", ""]
    rows = []
    for entry in ring:
        rows.append([entry["T"], entry["ranks"], f"{entry['seconds']:.2f}", f"{entry['peak_bytes_per_rank'] / 2**20:.1f}",
                     f"{entry['peak_bytes_per_rank'] / entry['block_bytes']:.1f}",
                     f"{entry['reference_core_peak_bytes'] / 2**20:.0f}" if "reference_core_peak_bytes" in entry else "—"])
    lines += [common.markdown_table(["T", "ranks", "time (s)", "peak MiB per rank", "peak in blocks of (H, T/P, Dh)",
                                     "reference core peak MiB"], rows), ""]
    lines += ["Peak NumPy memory during the call, above what was held before it (tracemalloc), besides the rank's "
              "own q, k, v and dout. The ring's is a fixed number of (H, T/P, Dh) blocks (the output and its "
              "log-sum-exp, dQ, the blocks and accumulators in flight, the pair's gradient terms) plus tiles of "
              "128 × 128 scores: it grows like T/P. The reference core's grows like T², the whole matrix of "
              "weights. The times are of ranks on a 2-core machine that other jobs share; 4 ranks oversubscribe it, so "
              "only their memory is meaningful.", ""]
    computes = list(paper[0]["efficiency"])
    lines += ["## On paper: scaling the data-parallel step to many machines", "",
              "Each machine keeps a batch of ~4096 tokens (weak scaling), computes its step, then takes part in a "
              f"ring all-reduce of the {gradient_bytes / 2**20:.1f} MiB of gradients, in which it sends and "
              "receives 2(P − 1)/P of them, with 2(P − 1) message latencies, not overlapped with compute. "
              f"Compute per step: {'; '.join(f'{name}: {seconds:.2f} s' for name, seconds in compute.items())}.", ""]
    rows = [[row["network"], row["machines"], f"{row['bytes_sent_per_machine'] / 2**20:.1f}",
             f"{1e3 * row['allreduce_seconds']:.0f}"] + [f"{100 * row['efficiency'][name]:.0f} %" for name in computes]
            for row in paper]
    lines += [common.markdown_table(["network (bandwidth, latency)", "machines", "MiB sent per machine per step",
                                     "all-reduce (ms)"] + [f"efficiency, {name}" for name in computes], rows), ""]
    lines += [f"Latencies assumed: {', '.join(f'{n} {1e6 * l:.0f} µs' for n, (_, l) in NETWORKS.items())}. "
              "The bytes barely grow with P (2(P − 1)/P → 2), so a ring all-reduce scales until its latency term "
              "or a slow link dominates; overlapping it with the backward (bucketing, as PyTorch DDP does) would "
              "hide most of it.", ""]
    if sequence:
        lines += sequence_report(sequence)
    return "\n".join(lines)


def main(argv=None):
    args = parse_arguments(argv)
    if args.worker:
        {"train": train_worker, "allreduce": allreduce_worker, "ring": ring_worker,
         "sequence": sequence_worker}[args.worker](args)
        return 0
    from minitransformer.parallel.launch import find_mpiexec

    if find_mpiexec() is None:
        print("bench_parallel: no MPI here (pip install -e '.[mpi]'); skipped", file=sys.stderr)
        return 0
    if args.only:
        payload = json.loads((common.results_dir() / "parallel.json").read_text())
        if args.only == "allreduce":
            payload["allreduce"] = run_worker("allreduce", 2, 1)
        else:
            payload["sequence_parallel"] = sequence_parallel_runs(args.sequence_lengths)
        payload[f"{args.only}_load_average"] = list(os.getloadavg())
        common.write_json("parallel", payload)
        path = common.write_text("parallel.md", report(
            payload["machine"], payload["sgemm_peak_gflops"], payload["throughput"], payload["parameters"],
            payload["gradient_bytes"], payload["allreduce"], payload["ring_attention"],
            payload["scaling_prediction"], payload["compute_seconds"], payload.get("sequence_parallel")))
        print(path.read_text())
        return 0
    info = common.machine_info()
    peak = common.matmul_peak_gflops()["peak_gflops"]
    origin = prepare_batches(args.steps + 1)
    print(f"bench_parallel: {args.steps} steps per layout and round (tokenizer: {origin})", flush=True)
    train, parameters, gradient_bytes = throughput(rounds=2, steps=args.steps)
    allreduce = run_worker("allreduce", 2, 1)
    lengths = ["--lengths", *map(str, args.lengths)]
    # 4 ranks on 2 cores: oversubscribed, so only its memory means anything
    ring = run_worker("ring", 1, 1, lengths) + run_worker("ring", 2, 1, lengths) + run_worker("ring", 4, 1, lengths)
    ring.sort(key=lambda entry: (entry["T"], entry["ranks"]))
    sequence = sequence_parallel_runs(args.sequence_lengths)
    # one machine's step: the faster layout's compute here, and an assumed GPU-class step
    compute = {"this machine": min(entry["median_compute_seconds"] for entry in train.values()),
               "a GPU-class step (assumed)": GPU_STEP_SECONDS}
    paper = predictions(gradient_bytes, compute)
    info["load_average_after"] = list(os.getloadavg())
    payload = {"machine": info, "sgemm_peak_gflops": peak, "throughput": train, "parameters": parameters,
               "gradient_bytes": gradient_bytes, "allreduce": allreduce, "ring_attention": ring,
               "scaling_prediction": paper, "compute_seconds": compute, "sequence_parallel": sequence, "networks": {n: {"bytes_per_second": b, "latency_seconds": l}
                                                        for n, (b, l) in NETWORKS.items()}}
    common.write_json("parallel", payload)
    path = common.write_text("parallel.md", report(info, peak, train, parameters, gradient_bytes, allreduce, ring, paper,
                                                   compute, sequence))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
