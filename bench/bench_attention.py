"""Benchmark of the attention core, forward + backward: NumPy, Cython, Cython blocked, PyTorch.

    python bench/bench_attention.py            # writes bench/results/<cpu>-<isa>/attention.{md,json}
    python bench/bench_attention.py --quick    # fewer repeats: a smoke test, same outputs
    make bench                                 # every bench/bench_*.py, through run_all.py

Size letters: B batch, H heads, T queries, S keys, Dh head width. Two shapes, float32,
with a padding mask (B, 1, 1, S) that keeps a random S/2..S keys per sequence:

    short  B=64, H=4, T=S=32,  Dh=64      many small problems (a translation batch)
    long   B=4,  H=8, T=S=512, Dh=64      few large ones

For each implementation, in this order:
  1. correctness: out, dq, dk, dv against the float64 truth (the NumPy reference,
     layers/attention.py, run in float64), each within a bound set by float32 rounding:
     relative error ≤ 64·√K·u, u = 2^-24 the unit roundoff and K = max(T, S, Dh) the
     longest sum behind an entry (a sum of K rounded terms is off by about √K·u, so the
     bound leaves a factor of 64 for the softmax and the chained products; a wrong
     formula is off by order 1). Nothing cancels with these random inputs, so the plain
     relative error is the right measure. The run stops if one fails;
  2. time: forward + backward, median of interleaved repeats (bench/common.py), and the
     rate in GFLOP/s, counting 4·B·H·T·S·Dh for the forward and 8·B·H·T·S·Dh for the
     backward (the blocked kernel does 2·B·H·T·S·Dh more, recomputing the scores; not
     counted, so its rate is comparable), as a fraction of two peaks: the float32 matrix
     product rate of NumPy's BLAS (sgemm on 2048×2048 matrices, best of 7), and the
     CPU's float32 multiply-add peak on the kernels' instruction-set path (vector
     registers, on the kernels' threads: fma_peak_gflops in csrc/attention.pyx);
  3. memory: the peak held during one forward + backward, measured in a fresh process
     (see common.py): NumPy arrays (tracemalloc) and resident memory (every allocator).

Implementations: "numpy" the reference, with NumPy's BLAS on all its threads, and
"numpy-1-blas-thread" the same on one (speed-ups are taken against the faster of the
two, so that a slow NumPy configuration cannot flatter the kernels); "cython" the fused
kernels (csrc/attention.pyx) on the instruction-set path they choose here (the best the CPU
runs, or MINITRANSFORMER_ISA's), and "cython-<path>" the same kernels on each other path
this CPU runs (baseline, avx2, avx512, neon: the one portable micro-kernel of
csrc/microkernel.h, compiled for each); "cython-blocked" the online-softmax kernels on the
chosen path, block 64, which never store the T×S weights;
"torch" torch.nn.functional.scaled_dot_product_attention with autograd, when PyTorch is
installed, with as many threads as the Cython kernels use.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402

from minitransformer.gradcheck import rel_error  # noqa: E402
from minitransformer.layers import attention as reference  # noqa: E402

SHAPES = {
    "short": dict(B=64, H=4, T=32, S=32, Dh=64),
    "long": dict(B=4, H=8, T=512, S=512, Dh=64),
}
DTYPE = np.float32
ROUNDING_ALLOWANCE = 64  # the factor of the correctness bound (see the docstring)
BLOCK_SIZE = 64
TARGETS = {  # the Cython core, fused, against each peer: at least this many times as fast
    "numpy": 3.0,
    "torch": 1.5,
}
BLOCKED_WITHIN = 1.2  # the blocked kernel's time at most this times the fused one's (long shape)


def correctness_bound(shape):
    """64·√K·u: the relative error float32 rounding allows (see the docstring)."""
    longest_sum = max(shape["T"], shape["S"], shape["Dh"])
    return ROUNDING_ALLOWANCE * np.sqrt(longest_sum) * common.UNIT_ROUNDOFF_F32


def make_inputs(shape, seed=0):
    """q (B, H, T, Dh), k, v (B, H, S, Dh), dout (B, H, T, Dh), mask (B, 1, 1, S)."""
    rng = np.random.default_rng(seed)
    B, H, T, S, Dh = (shape[key] for key in ("B", "H", "T", "S", "Dh"))
    q = rng.standard_normal((B, H, T, Dh)).astype(DTYPE)
    k = rng.standard_normal((B, H, S, Dh)).astype(DTYPE)
    v = rng.standard_normal((B, H, S, Dh)).astype(DTYPE)
    dout = rng.standard_normal((B, H, T, Dh)).astype(DTYPE)
    lengths = rng.integers(S // 2, S + 1, size=B)
    mask = (np.arange(S)[None, :] < lengths[:, None])[:, None, None, :]
    return q, k, v, dout, mask


def attention_flops(shape):
    """Forward 4·B·H·T·S·Dh (two products), backward 8·B·H·T·S·Dh (four)."""
    return 12.0 * shape["B"] * shape["H"] * shape["T"] * shape["S"] * shape["Dh"]


# --- the implementations: each returns out, dq, dk, dv ----------------------------------------


def run_numpy(q, k, v, dout, mask):
    out, probs = reference.attention_forward(q, k, v, mask)
    return (out, *reference.attention_backward(dout, q, k, v, probs))


def run_numpy_one_blas_thread(q, k, v, dout, mask):
    """The reference with BLAS held to one thread: on a busy machine this is often the
    faster NumPy (threads that wait for one another lose the most when cores are shared)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return run_numpy(q, k, v, dout, mask)


def run_cython(q, k, v, dout, mask):
    from minitransformer.backends import cython_backend

    out, probs = cython_backend.attention_forward(q, k, v, mask)
    return (out, *cython_backend.attention_backward(dout, q, k, v, probs))


def run_cython_on(path):
    """The fused kernels on one instruction-set path, the chosen one restored afterwards."""

    def run(q, k, v, dout, mask):
        from minitransformer import _ext

        chosen = _ext.isa_used()
        _ext.use_isa(path)
        try:
            return run_cython(q, k, v, dout, mask)
        finally:
            _ext.use_isa(chosen)

    return run


def run_cython_blocked(q, k, v, dout, mask):
    from minitransformer.backends import cython_backend

    out, logsumexp = cython_backend.attention_forward_blocked(q, k, v, mask, BLOCK_SIZE)
    return (out, *cython_backend.attention_backward_blocked(dout, q, k, v, out, logsumexp, mask, BLOCK_SIZE))


def run_torch(q, k, v, dout, mask):
    import torch
    import torch.nn.functional as F

    q_t, k_t, v_t = (torch.from_numpy(x).requires_grad_() for x in (q, k, v))  # no copies
    out = F.scaled_dot_product_attention(q_t, k_t, v_t, attn_mask=torch.from_numpy(mask))
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), q_t.grad.numpy(), k_t.grad.numpy(), v_t.grad.numpy()


def implementations():
    """{name: function} for what can run here, and {name: why not} for what cannot."""
    from minitransformer.backends import cython_backend

    available, missing = {"numpy": run_numpy, "numpy-1-blas-thread": run_numpy_one_blas_thread}, {}
    reason = cython_backend.unavailable_reason()
    if reason is None:
        from minitransformer import _ext

        available["cython"] = run_cython
        for path in reversed(_ext.isa_paths()):  # the widest first
            if path != _ext.isa_used():
                available[f"cython-{path}"] = run_cython_on(path)
        available["cython-blocked"] = run_cython_blocked
    else:
        missing["cython"] = missing["cython-blocked"] = reason
    try:
        import torch

        torch.set_num_threads(kernel_threads())
        available["torch"] = run_torch
    except ImportError:
        missing["torch"] = "PyTorch is not installed"
    return available, missing


def kernel_threads():
    """The OpenMP threads of the Cython kernels (the cores, unless OMP_NUM_THREADS says)."""
    try:
        from minitransformer._ext import attention

        return attention.max_threads()
    except ImportError:
        return os.cpu_count() or 1


# --- the three measurements ---------------------------------------------------------------------


def check_correctness(functions, inputs, bound):
    """{name: {tensor: rel_error}} against the float64 truth; SystemExit naming any
    tensor beyond the bound (correctness_bound)."""
    q, k, v, dout, mask = inputs
    expected = run_numpy(*(x.astype(np.float64) for x in (q, k, v, dout)), mask)
    report, failures = {}, []
    for name, function in functions.items():
        got = function(q, k, v, dout, mask)
        errors = {tensor: rel_error(a.astype(np.float64), b) for tensor, a, b in zip(("out", "dq", "dk", "dv"), got, expected)}
        report[name] = errors
        failures += [f"{name} {tensor}: {err:.2e} (bound {bound:.1e})" for tensor, err in errors.items() if not err <= bound]
    if failures:
        listing = "\n  ".join(failures)
        raise SystemExit(f"bench_attention: results differ from the float64 truth, not timing:\n  {listing}")
    return report


def memory_in_fresh_process(name, shape_name):
    """Run this file with --memory-probe in a new process; returns its JSON answer."""
    env = dict(os.environ)
    # large blocks mmapped (and so returned on free) at any size: see common.py
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    env["MINITRANSFORMER_RETURN_FREED_MEMORY"] = "1"
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", name, shape_name]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_probe(name, shape_name):
    """In this (fresh) process: one warm-up call, then the peaks of one more."""
    functions, _ = implementations()
    inputs = make_inputs(SHAPES[shape_name])
    function = functions[name]
    function(*inputs)
    rss = common.peak_rss_growth_bytes(lambda: function(*inputs))
    numpy_bytes = common.peak_numpy_bytes(lambda: function(*inputs))
    print(json.dumps({"numpy_peak_bytes": numpy_bytes, "rss_growth_bytes": rss}))


# --- the report -------------------------------------------------------------------------------


def best_numpy_median(timing):
    """The median of the faster NumPy configuration, the baseline of every speed-up."""
    return min(timing[name]["median_ms"] for name in ("numpy", "numpy-1-blas-thread"))


def fma_peak():
    """The CPU's float32 multiply-add peak on the kernels' threads, GFLOP/s, or None."""
    try:
        from minitransformer._ext import attention
    except ImportError:
        return None
    return attention.fma_peak_gflops()


def mib(n_bytes):
    return "n/a" if n_bytes is None else f"{n_bytes / 2**20:.1f}"


def markdown_report(results):
    machine, peak, fma = results["machine"], results["matmul_peak"], results.get("fma_peak_gflops")
    blas_threads = ", ".join(str(lib["num_threads"]) for lib in machine["blas"] if lib["user_api"] == "blas")
    lines = [
        "# Attention core: forward + backward",
        "",
        f"Machine: {common.machine_line(machine, peak['peak_gflops'])}.",
        "",
        f"Written by `python bench/bench_attention.py{' --quick' if results['quick'] else ''}` "
        f"on {machine['date_utc']}. float32, padding mask; median of interleaved repeats "
        "(bench/common.py). Speed-ups are ratios of medians from this one run, against the faster "
        "of the two NumPy rows.",
        "",
        f"Machine: {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs, "
        f"{machine.get('memory_gib', '?')} GiB; Python {machine['python']}, NumPy {machine['numpy']}, "
        f"PyTorch {machine.get('torch')}. Threads: Cython kernels "
        f"{results['kernel_threads']} (OpenMP), BLAS libraries {blas_threads or '?'}, "
        f"PyTorch {results['kernel_threads']}.",
        f"Load average (1, 5, 15 min) before: {results['load_before']}, after: {results['load_after']} "
        "(a load above the CPU count means other processes shared the cores: absolute times "
        "are then inflated, ratios less so).",
        "",
        f"float32 matrix-product rate (NumPy sgemm, {peak['size']}², all BLAS threads): "
        f"peak {peak['peak_gflops']:.1f} GFLOP/s, median {peak['median_gflops']:.1f} GFLOP/s. "
        f"float32 multiply-add peak on the {machine['isa_path']} path (vector registers, "
        f"{results['kernel_threads']} threads): "
        + (f"{fma:.1f} GFLOP/s." if fma else "not measured (the kernels are not built)."),
        "",
    ]
    header = ["implementation", "median ms", "p25–p75 ms", "× best NumPy", "GFLOP/s", "% of sgemm peak",
              "% of FMA peak", "NumPy-array peak MiB", "RSS growth MiB"]  # fmt: skip
    for shape_name, shape in SHAPES.items():
        entry = results["shapes"][shape_name]
        lines += [f"## {shape_name}: B={shape['B']}, H={shape['H']}, T=S={shape['T']}, Dh={shape['Dh']}", ""]
        rows = []
        numpy_median = best_numpy_median(entry["timing"])
        for name, timing in entry["timing"].items():
            gflops = entry["flops"] / (timing["median_ms"] * 1e-3) / 1e9
            memory = entry["memory"].get(name, {})
            rows.append([
                name,
                f"{timing['median_ms']:.2f}",
                f"{timing['p25_ms']:.2f}–{timing['p75_ms']:.2f}",
                f"{numpy_median / timing['median_ms']:.2f}",
                f"{gflops:.1f}",
                f"{100 * gflops / peak['peak_gflops']:.0f} %",
                f"{100 * gflops / fma:.0f} %" if fma else "n/a",
                mib(memory.get("numpy_peak_bytes")),
                mib(memory.get("rss_growth_bytes")),
            ])  # fmt: skip
        lines += [common.markdown_table(header, rows), ""]
        worst = max(max(errors.values()) for errors in entry["correctness"].values())
        lines += [f"Checked before timing: largest relative error against the float64 truth {worst:.1e} "
                  f"(bound 64·√K·u = {entry['bound']:.1e}).", ""]  # fmt: skip
    lines += ["## Targets: the fused core ≥ 3× NumPy and ≥ 1.5× PyTorch; blocked within 1.2× of fused", ""]
    for shape_name, verdict in results["target"].items():
        lines.append(f"- {shape_name}: {verdict}")
    for name, reason in results["missing"].items():
        lines.append(f"- not measured: {name} ({reason})")
    lines += [
        "",
        "## Reading the numbers",
        "",
        "- NumPy-array peak: the most NumPy memory held at once during one forward + backward "
        "(tracemalloc; the Cython kernels allocate through NumPy, PyTorch does not, hence 0). "
        "RSS growth: the same seen by the operating system (every allocator), in a fresh process.",
        "- The plain kernels keep the (B, H, T, S) weights for the backward, as the model needs "
        "them for inspection; the blocked ones keep a (B, H, T) log-sum-exp instead, so their memory "
        "grows with T + S rather than T·S.",
        "- The kernels run their threads over (b, h) problems; inside a problem the products go "
        "through one portable micro-kernel that keeps a tile of C in vector registers and uses the "
        "operands where they lie (csrc/microkernel.h explains how), compiled for each instruction "
        "set: the cython-<path> rows are the same kernels on the other paths this CPU runs. The "
        "NumPy reference runs each product on all BLAS threads; when other processes share the "
        "cores, those threads wait for one another: compare the two NumPy rows.",
        "",
    ]
    return "\n".join(lines)


def targets(shapes):
    """{target: verdict} for the fused kernel against each peer and for the blocked kernel."""
    verdicts = {}
    for shape_name, entry in shapes.items():
        timing = entry["timing"]
        if "cython" not in timing:
            verdicts[shape_name] = "not measured (the Cython kernels are not built)"
            continue
        ours = timing["cython"]["median_ms"]
        peers = {"numpy": best_numpy_median(timing), "torch": timing.get("torch", {}).get("median_ms")}
        for peer, wanted in TARGETS.items():
            if peers[peer] is None:
                verdicts[f"{shape_name}, vs {peer}"] = f"not measured ({peer} is not installed)"
                continue
            ratio = peers[peer] / ours
            met = "met" if ratio >= wanted else "NOT met"
            verdicts[f"{shape_name}, vs {peer}"] = f"{met}: {ratio:.2f}× (wanted ≥ {wanted}×)"
        if shape_name == "long" and "cython-blocked" in timing:
            ratio = timing["cython-blocked"]["median_ms"] / ours
            met = "met" if ratio <= BLOCKED_WITHIN else "NOT met"
            verdicts["long, blocked vs fused"] = f"{met}: {ratio:.2f}× the fused time (wanted ≤ {BLOCKED_WITHIN}×)"
    return verdicts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test)")
    parser.add_argument("--memory-probe", nargs=2, metavar=("IMPLEMENTATION", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        memory_probe(*args.memory_probe)
        return 0

    functions, missing = implementations()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = {
        "quick": args.quick,
        "dtype": np.dtype(DTYPE).name,
        "block_size": BLOCK_SIZE,
        "kernel_threads": kernel_threads(),
        "missing": missing,
        "load_before": load_before,
        "shapes": {},
    }
    print(f"bench_attention: {', '.join(functions)}; not available: {missing or 'none'}")
    results["matmul_peak"] = common.matmul_peak_gflops(DTYPE, repeats=3 if args.quick else 7)
    results["fma_peak_gflops"] = fma_peak()
    print(f"  float32 sgemm peak {results['matmul_peak']['peak_gflops']:.1f} GFLOP/s, "
          f"FMA peak {results['fma_peak_gflops'] or 'n/a'}")
    rounds = {"short": (4, 3), "long": (2, 2)} if args.quick else {"short": (15, 3), "long": (6, 2)}
    for shape_name, shape in SHAPES.items():
        inputs = make_inputs(shape)
        entry = {"shape": shape, "flops": attention_flops(shape)}
        entry["bound"] = correctness_bound(shape)
        entry["correctness"] = check_correctness(functions, inputs, entry["bound"])
        n_rounds, per_round = rounds[shape_name]
        entry["timing"] = common.interleaved_timings(
            {name: (lambda f=function: f(*inputs)) for name, function in functions.items()},
            rounds=n_rounds,
            per_round=per_round,
        )
        entry["memory"] = {name: memory_in_fresh_process(name, shape_name) for name in functions}
        results["shapes"][shape_name] = entry
        summary = ", ".join(f"{name} {t['median_ms']:.2f} ms" for name, t in entry["timing"].items())
        print(f"  {shape_name}: {summary}")
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["target"] = targets(results["shapes"])
    results["machine"] = common.machine_info()
    common.write_json("attention", results)
    path = common.write_text("attention.md", markdown_report(results))
    print(f"  target: {results['target']}\n  wrote {path} and attention.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
