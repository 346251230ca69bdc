"""GPU benchmark: the attention core and a whole training step on an NVIDIA GPU.

    .venv/bin/python bench/bench_gpu.py              # writes bench/results/gpu.md and gpu.json
    .venv/bin/python bench/bench_gpu.py --no-cpu     # without the NumPy training baseline
    .venv/bin/python bench/bench_gpu.py --smoke      # tiny shapes, a few repeats: does it run?

What it measures, each after checking the result against the NumPy reference:

  1. The attention core, forward and forward+backward, float32 with a padding mask, at
     (B=64, H=4, T=S=32, Dh=64), short sentences in big batches, and (B=4, H=8, T=S=512,
     Dh=64), long sequences:
       cupy           minitransformer's backend: cuBLAS + the fused kernels of csrc/attention.cu
       reference      layers/attention.py run on CuPy arrays: cuBLAS + unfused elementwise ops,
                      the same math, so the gap is what fusing the softmax buys
       torch eager    the same math in PyTorch (materialized weights, autograd), if installed
       torch SDPA     torch.nn.functional.scaled_dot_product_attention, fused, keeps no weights
  2. Training throughput of make_model(config, backend="cupy") on the Tatoeba config
     (D=256, 3+3 layers, 4 heads, F=1024, V=8000): ~4096-token batches of random ids with
     Tatoeba-like lengths of 5-15 tokens, cut by the training Batcher, one full step each
     (forward, backward, clipping, Adam), tokens counted as train.py counts them. The NumPy
     backend on the CPU gives the baseline.

GPU times come from CUDA events (the median of the repeats, after warm-up, so compiling
and memory-pool growth are not counted). Without CuPy or a visible GPU the script prints why
and exits 0 without writing anything.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from minitransformer.backends import cupy_backend  # noqa: E402
from minitransformer.batching import Batcher  # noqa: E402
from minitransformer.configs import TATOEBA  # noqa: E402
from minitransformer.gradcheck import rel_error  # noqa: E402
from minitransformer.layers import attention as reference  # noqa: E402
from minitransformer.layers.dropout import DropoutStream  # noqa: E402
from minitransformer.model import make_model  # noqa: E402
from minitransformer.optim import Adam  # noqa: E402
from minitransformer.step import Recipe, train_step  # noqa: E402

RESULTS = REPO / "bench" / "results"
ATTENTION_SHAPES = [  # (B, H, T=S, Dh)
    (64, 4, 32, 64),
    (4, 8, 512, 64),
]
SMOKE_ATTENTION_SHAPES = [(2, 2, 8, 16), (1, 2, 40, 8)]
VOCAB_SIZE = 8000
MAX_TOKENS = 4096
SENTENCE_LENGTHS = (5, 15)  # tokens, inclusive, as in Tatoeba's short sentences
FLOAT32_TOLERANCE = 1e-5  # attention core, as in tests/test_cupy_backend.py
MODEL_TOLERANCE = 1e-4  # a whole step in float32
TORCH_TOLERANCE = 1e-4  # PyTorch's kernels, fused ones included, add in yet other orders


# --- timing -------------------------------------------------------------------------------


def gpu_median_ms(function, repeats, warmup):
    """Median GPU time of ``function()`` in milliseconds, measured with CUDA events."""
    import cupy

    for _ in range(warmup):
        function()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        function()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def torch_median_ms(torch, function, repeats, warmup):
    """The same, with torch's events on torch's stream."""
    for _ in range(warmup):
        function()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


# --- the machine --------------------------------------------------------------------------


def version_string(cuda_version):
    """12040 -> "12.4", CUDA's encoding of major·1000 + minor·10."""
    return f"{cuda_version // 1000}.{(cuda_version % 1000) // 10}"


def load_torch_cuda():
    """torch if it is installed and sees a GPU, else None (the comparison is optional)."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def describe_device(torch):
    import cupy

    device_id = cupy.cuda.Device().id
    properties = cupy.cuda.runtime.getDeviceProperties(device_id)
    name = properties["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": f"{properties['major']}.{properties['minor']}",
        "memory_gib": round(properties["totalGlobalMem"] / 2**30, 1),
        "driver_cuda": version_string(cupy.cuda.runtime.driverGetVersion()),
        "runtime_cuda": version_string(cupy.cuda.runtime.runtimeGetVersion()),
        "cupy": cupy.__version__,
        "numpy": np.__version__,
        # CuPy multiplies float32 in full precision unless this is "1" (TF32 tensor cores)
        "cupy_tf32": os.environ.get("CUPY_TF32", "0"),
        "torch": torch.__version__ if torch is not None else None,
        "torch_allows_tf32": bool(torch.backends.cuda.matmul.allow_tf32) if torch is not None else None,
    }


# --- 1. the attention core ---------------------------------------------------------------


def attention_inputs(batch, heads, length, head_dim, seed=0):
    """float32 q, k, v, dout (B, H, L, Dh) and a padding mask (B, 1, 1, L) with every row
    keeping at least half its keys, so no row is fully masked (torch's softmax would give NaN)."""
    rng = np.random.default_rng(seed)
    q, k, v, dout = (rng.standard_normal((batch, heads, length, head_dim)).astype(np.float32) for _ in range(4))
    lengths = rng.integers((length + 1) // 2, length + 1, size=batch)  # (B,)
    mask = (np.arange(length)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, L)
    return q, k, v, dout, mask


def bench_attention(shape, torch, repeats, warmup):
    import cupy

    batch, heads, length, head_dim = shape
    q, k, v, dout, mask = attention_inputs(*shape)
    q_gpu, k_gpu, v_gpu, dout_gpu, mask_gpu = (cupy.asarray(array) for array in (q, k, v, dout, mask))

    # check before timing: every GPU path against the NumPy reference on the CPU
    out_ref, probs_ref = reference.attention_forward(q, k, v, mask)
    grads_ref = reference.attention_backward(dout, q, k, v, probs_ref)
    out, probs = cupy_backend.attention_forward(q_gpu, k_gpu, v_gpu, mask_gpu)
    grads = cupy_backend.attention_backward(dout_gpu, q_gpu, k_gpu, v_gpu, probs)
    errors = {"out": rel_error(cupy.asnumpy(out), out_ref), "probs": rel_error(cupy.asnumpy(probs), probs_ref)}
    for tensor, grad, grad_ref in zip(("dq", "dk", "dv"), grads, grads_ref):
        errors[tensor] = rel_error(cupy.asnumpy(grad), grad_ref)
    worst = max(errors.values())
    if not worst <= FLOAT32_TOLERANCE:
        raise SystemExit(f"bench_gpu: the cupy attention core disagrees with NumPy at {shape}: {errors}")

    def timed(forward, backward):
        state = {}

        def run_forward():
            state["out"], state["probs"] = forward(q_gpu, k_gpu, v_gpu, mask_gpu)

        def run_both():
            run_forward()
            backward(dout_gpu, q_gpu, k_gpu, v_gpu, state["probs"])

        return {
            "forward_ms": gpu_median_ms(run_forward, repeats, warmup),
            "forward_backward_ms": gpu_median_ms(run_both, repeats, warmup),
        }

    implementations = {
        "cupy (cuBLAS + fused kernels)": timed(cupy_backend.attention_forward, cupy_backend.attention_backward),
        "reference code on CuPy (cuBLAS + unfused ops)": timed(
            reference.attention_forward, reference.attention_backward
        ),
    }
    if torch is not None:
        implementations.update(bench_attention_torch(torch, q, k, v, dout, mask, out_ref, repeats, warmup))
    return {
        "shape": {"B": batch, "H": heads, "T": length, "S": length, "Dh": head_dim},
        "dtype": "float32",
        "mask": "padding (B, 1, 1, S)",
        "max_rel_error_vs_numpy": worst,
        "implementations": implementations,
    }


def bench_attention_torch(torch, q, k, v, dout, mask, out_ref, repeats, warmup):
    """torch eager (the same math) and torch SDPA, checked against the NumPy output first."""
    device = torch.device("cuda")
    q_t, k_t, v_t = (torch.tensor(array, device=device, requires_grad=True) for array in (q, k, v))
    dout_t = torch.tensor(dout, device=device)
    mask_t = torch.tensor(mask, device=device)
    scale = 1.0 / math.sqrt(q.shape[-1])

    def eager(q_in, k_in, v_in):
        scores = (q_in @ k_in.transpose(-1, -2)) * scale  # (B, H, T, S)
        probs = torch.softmax(scores.masked_fill(~mask_t, float("-inf")), dim=-1)  # (B, H, T, S)
        return probs @ v_in  # (B, H, T, Dh)

    def sdpa(q_in, k_in, v_in):
        return torch.nn.functional.scaled_dot_product_attention(q_in, k_in, v_in, attn_mask=mask_t)

    results = {}
    for label, attention in (("torch eager (same math)", eager), ("torch SDPA (fused, no weights kept)", sdpa)):
        error = rel_error(attention(q_t, k_t, v_t).detach().cpu().numpy(), out_ref)
        if not error <= TORCH_TOLERANCE:
            raise SystemExit(f"bench_gpu: {label} disagrees with NumPy (relative error {error:.1e})")

        def run_forward(attention=attention):
            with torch.no_grad():
                attention(q_t, k_t, v_t)

        def run_both(attention=attention):
            q_t.grad = k_t.grad = v_t.grad = None
            attention(q_t, k_t, v_t).backward(dout_t)

        results[label] = {
            "forward_ms": torch_median_ms(torch, run_forward, repeats, warmup),
            "forward_backward_ms": torch_median_ms(torch, run_both, repeats, warmup),
        }
    return results


# --- 2. whole-model training -------------------------------------------------------------


def random_examples(count, vocab_size, seed=0):
    """(source ids, target ids) pairs with lengths uniform in SENTENCE_LENGTHS, ids clear of 0-3."""
    rng = np.random.default_rng(seed)
    low, high = SENTENCE_LENGTHS

    def sentence():
        return rng.integers(4, vocab_size, size=int(rng.integers(low, high + 1))).tolist()

    return [(sentence(), sentence()) for _ in range(count)]


def training_step(model, optimizer, batch, step, xp, dropout_rng, train_config):
    """One step of the training recipe (minitransformer/step.py); returns the loss."""
    return train_step(model, batch, optimizer, step, Recipe.of(train_config), dropout_rng).loss


def check_training_step(model_config, batch):
    """One step without dropout on the GPU against the CPU: the loss and every gradient."""
    import cupy

    cpu = make_model(model_config, seed=0, backend="numpy")
    gpu = make_model(model_config, seed=0, backend="cupy")
    loss_cpu = cpu.loss_and_grads(batch.src, batch.tgt_in, batch.tgt_out, smoothing=0.1, rng=None)
    loss_gpu = gpu.loss_and_grads(
        cupy.asarray(batch.src), cupy.asarray(batch.tgt_in), cupy.asarray(batch.tgt_out), smoothing=0.1, rng=None
    )
    # b_k is skipped: its gradient is zero in exact arithmetic, both sides hold rounding noise
    errors = {
        key: rel_error(cupy.asnumpy(gpu.grads[key]), grad) for key, grad in cpu.grads.items() if not key.endswith(".b_k")
    }
    worst_key = max(errors, key=errors.get)
    loss_error = abs(loss_gpu - loss_cpu) / abs(loss_cpu)
    if not (loss_error <= MODEL_TOLERANCE and errors[worst_key] <= MODEL_TOLERANCE):
        raise SystemExit(
            f"bench_gpu: a training step on the GPU disagrees with NumPy: loss {loss_gpu} vs {loss_cpu}, "
            f"worst gradient {worst_key} at relative error {errors[worst_key]:.1e}"
        )
    return {"loss_rel_error": loss_error, "worst_grad_rel_error": errors[worst_key], "worst_grad": worst_key}


def bench_training(backend, model_config, batches, steps, warmup, train_config):
    """Wall-clock throughput of ``steps`` full training steps after ``warmup`` untimed ones."""
    model = make_model(model_config, seed=0, backend=backend)
    xp = model.xp
    optimizer = Adam(model.params, train_config.beta1, train_config.beta2, train_config.eps)
    dropout_rng = DropoutStream(seed=0)  # counter-based: the masks are drawn where the tensors are

    def synchronize():
        if xp is not np:
            xp.cuda.Device().synchronize()

    for step in range(1, warmup + 1):
        training_step(model, optimizer, batches[step % len(batches)], step, xp, dropout_rng, train_config)
    synchronize()
    tokens = target_tokens = 0
    start = time.perf_counter()
    for step in range(warmup + 1, warmup + steps + 1):
        batch = batches[step % len(batches)]
        loss = training_step(model, optimizer, batch, step, xp, dropout_rng, train_config)
        tokens += batch.n_src_tokens + batch.n_tgt_tokens
        target_tokens += batch.n_tgt_tokens
    synchronize()
    seconds = time.perf_counter() - start
    if not math.isfinite(loss):
        raise SystemExit(f"bench_gpu: the {backend} training loss is not finite ({loss})")
    return {
        "steps": steps,
        "step_ms": 1000.0 * seconds / steps,
        "tokens_per_second": tokens / seconds,
        "target_tokens_per_second": target_tokens / seconds,
        "last_loss": loss,
    }


def bench_whole_model(smoke, include_cpu):
    train_config = TATOEBA
    vocab_size = 200 if smoke else VOCAB_SIZE
    model_config = replace(train_config.model, src_vocab_size=vocab_size, tgt_vocab_size=vocab_size)
    if smoke:
        model_config = replace(model_config, d_model=32, d_ff=64, n_encoder_layers=1, n_decoder_layers=1)
    examples = random_examples(400 if smoke else 4000, vocab_size)
    batcher = Batcher(examples, max_tokens=(512 if smoke else MAX_TOKENS), seed=0)
    batches = [batcher.make_batch(indices) for indices in batcher.epoch_batches(0)[:8]]
    small = batcher.make_batch(batcher.epoch_batches(0)[0][:16])

    check = check_training_step(model_config, small)
    steps, warmup = (3, 1) if smoke else (30, 5)
    results = {
        "config": model_config.to_dict(),
        "batches": {
            "max_padded_tokens": batcher.max_tokens,
            "mean_sentences": statistics.mean(batch.size for batch in batches),
            "mean_source_plus_target_tokens": statistics.mean(b.n_src_tokens + b.n_tgt_tokens for b in batches),
        },
        "check_vs_numpy": check,
        "cupy": bench_training("cupy", model_config, batches, steps, warmup, train_config),
    }
    if include_cpu:
        results["numpy_cpu"] = bench_training("numpy", model_config, batches, 2 if not smoke else 1, 1, train_config)
    return results


# --- report ------------------------------------------------------------------------------


def markdown_report(report):
    device = report["device"]
    lines = [
        "# GPU benchmark",
        "",
        f"{device['name']} (compute capability {device['compute_capability']}, {device['memory_gib']} GiB), "
        f"driver CUDA {device['driver_cuda']}, runtime CUDA {device['runtime_cuda']}, CuPy {device['cupy']}, "
        f"NumPy {device['numpy']}, PyTorch {device['torch'] or 'not available'}. {report['date']}.",
        "Written by `bench/bench_gpu.py`; every path was checked against the NumPy reference first.",
        "",
        "## Attention core (float32, padding mask), median milliseconds",
        "",
        "| shape (B, H, T=S, Dh) | implementation | forward | forward + backward |",
        "| --- | --- | ---: | ---: |",
    ]
    for entry in report["attention"]:
        shape = entry["shape"]
        label = f"({shape['B']}, {shape['H']}, {shape['T']}, {shape['Dh']})"
        for name, times in entry["implementations"].items():
            lines.append(f"| {label} | {name} | {times['forward_ms']:.3f} | {times['forward_backward_ms']:.3f} |")
    training = report["training"]
    config = training["config"]
    lines += [
        "",
        "## Training throughput",
        "",
        f"D={config['d_model']}, {config['n_encoder_layers']}+{config['n_decoder_layers']} layers, "
        f"{config['n_heads']} heads, F={config['d_ff']}, V={config['tgt_vocab_size']}, {config['dtype']}, "
        f"dropout {config['dropout']}; batches of at most {training['batches']['max_padded_tokens']} padded "
        f"tokens ({training['batches']['mean_sentences']:.0f} sentences, "
        f"{training['batches']['mean_source_plus_target_tokens']:.0f} real tokens on average). A step is "
        "forward, backward, clipping and Adam; tokens are source + target, as train.py counts them.",
        "",
        "| backend | ms / step | tokens / s | target tokens / s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in ("cupy", "numpy_cpu"):
        if name in training:
            row = training[name]
            lines.append(
                f"| {name} | {row['step_ms']:.1f} | {row['tokens_per_second']:,.0f} | "
                f"{row['target_tokens_per_second']:,.0f} |"
            )
    check = training["check_vs_numpy"]
    lines += [
        "",
        f"Check before timing: loss relative error {check['loss_rel_error']:.1e}, worst gradient "
        f"({check['worst_grad']}) {check['worst_grad_rel_error']:.1e}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and a few repeats")
    parser.add_argument("--no-cpu", action="store_true", help="skip the NumPy training baseline")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for gpu.md and gpu.json")
    args = parser.parse_args(argv)

    reason = cupy_backend.unavailable_reason()
    if reason is not None:
        print(f"bench_gpu: skipped, the cupy backend cannot run here: {reason}")
        return 0
    torch = load_torch_cuda()
    repeats, warmup = (3, 1) if args.smoke else (50, 5)
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": describe_device(torch),
        "attention": [],
    }
    for shape in SMOKE_ATTENTION_SHAPES if args.smoke else ATTENTION_SHAPES:
        print(f"bench_gpu: attention core at (B, H, T=S, Dh) = {shape} ...", flush=True)
        report["attention"].append(bench_attention(shape, torch, repeats, warmup))
    print("bench_gpu: training steps ...", flush=True)
    report["training"] = bench_whole_model(args.smoke, include_cpu=not args.no_cpu)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = markdown_report(report)
    (args.out / "gpu.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
