"""Shared helpers for the benchmarks in bench/: timing, memory, machine description, output.

Timing. Every number is a median of repeats after a warm-up, measured with
time.perf_counter (wall clock). Implementations that are compared are timed in the same
run, interleaved: round after round, each implementation runs a few times in turn. On a
shared machine the load drifts within seconds; interleaving exposes every implementation
to the same drift, so their ratios stay meaningful even when the absolute times do not.
The load average before and after is recorded with the results for that reason.

Where results go. Each machine, and each instruction-set path the compiled kernels take
on it, gets its own folder, bench/results/<cpu>-<isa>/ (results_dir), so the figures of an
AVX-512 machine and of an AVX2 one stand side by side instead of overwriting each other.
MINITRANSFORMER_ISA=avx2 make bench on an AVX-512 machine writes to its -avx2 folder.
Every report names the CPU, the path and the measured sgemm peak.

Memory, two ways, both "the most held at once during one call, above what was held
before it":
  * peak_numpy_bytes: tracemalloc, which sees every NumPy array (including those the
    Cython kernels allocate through NumPy) and nothing else; exact and repeatable.
  * peak_rss_growth_bytes: the process's peak resident memory (Linux VmHWM, which
    /proc/self/clear_refs resets) minus its resident memory before the call. It sees
    every allocator (PyTorch's too) but also pages that malloc keeps after a free; run it
    in a fresh process with MALLOC_MMAP_THRESHOLD_ set (see bench_attention.py) so that
    large blocks are returned to the system when freed.
"""

import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

# float32's unit roundoff, 2^-24: the relative error of one rounding
UNIT_ROUNDOFF_F32 = 2.0**-24


def _keep_freed_memory():
    """Measure as `minitransformer train` runs: with freed memory kept for reuse (see
    minitransformer/memory.py), which every implementation in a benchmark process shares.
    A memory probe sets MINITRANSFORMER_RETURN_FREED_MEMORY=1 to measure peaks instead:
    kept memory would hide a call's peak from the operating system's count."""
    if os.environ.get("MINITRANSFORMER_RETURN_FREED_MEMORY") == "1":
        return False
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from minitransformer.memory import keep_freed_memory

    return keep_freed_memory()


KEEPS_FREED_MEMORY = _keep_freed_memory()


# --- timing ----------------------------------------------------------------------------------


def interleaved_timings(functions, rounds, per_round=1, warmup=1):
    """Time each function of {name: fn} in turns; returns {name: summary} in milliseconds.

    Each function runs `warmup` times first; then `rounds` times over, each function runs
    `per_round` times in a row. summary: median, min, max, the 25th and 75th percentiles,
    and the number of samples.
    """
    samples = {name: [] for name in functions}
    for function in functions.values():
        for _ in range(warmup):
            function()
    for _ in range(rounds):
        for name, function in functions.items():
            for _ in range(per_round):
                start = time.perf_counter()
                function()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: summarize(values) for name, values in samples.items()}


def summarize(values_ms):
    values = sorted(values_ms)
    quartiles = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {
        "median_ms": statistics.median(values),
        "min_ms": values[0],
        "max_ms": values[-1],
        "p25_ms": quartiles[0],
        "p75_ms": quartiles[2],
        "samples": len(values),
    }


def matmul_peak_gflops(dtype=np.float32, size=2048, repeats=7):
    """The machine's matrix-product rate through NumPy's BLAS, all its threads, in GFLOP/s.

    C = A·B on (size, size) matrices costs 2·size³ floating-point operations. The best of
    the repeats is the "peak" (what BLAS reaches at its best on this machine, now); the
    median is returned too.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    a @ b  # warm-up: BLAS threads and buffers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    flops = 2.0 * size**3
    return {
        "dtype": np.dtype(dtype).name,
        "size": size,
        "peak_gflops": flops / min(times) / 1e9,
        "median_gflops": flops / statistics.median(times) / 1e9,
    }


# --- memory ----------------------------------------------------------------------------------


def peak_numpy_bytes(function):
    """Bytes of NumPy arrays (and other Python allocations) held at most during function()."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth_bytes(function):
    """Peak resident memory during function() minus resident memory before; None off Linux."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # reset VmHWM, the peak, to the current VmRSS
        before = _status_kib("VmRSS")
    except OSError:
        return None
    function()
    return (_status_kib("VmHWM") - before) * 1024


# --- the Tatoeba data ------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
TATOEBA = REPO.parent / "shared" / "data"
SCRATCH = REPO / "bench" / "scratch"


def tatoeba_tokenizer(vocab_size=8000):
    """The benchmark config's tokenizer: SentencePiece BPE, one English-French vocabulary of
    ``vocab_size`` pieces, trained on the Tatoeba training file. A `make train CONFIG=tatoeba`
    run's is reused; otherwise one is trained once into bench/scratch/.
    Returns (tokenizer, where it came from)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from minitransformer.data import load_pairs
    from minitransformer.tokenizer import Tokenizer, TokenizerError

    for directory in (REPO / "runs" / "tatoeba" / "tokenizer", SCRATCH / "tatoeba-tokenizer"):
        try:
            tokenizer = Tokenizer.load(directory)
        except TokenizerError:
            continue
        if tokenizer.src_vocab_size <= vocab_size and tokenizer.tgt_vocab_size <= vocab_size:
            return tokenizer, str(directory.relative_to(REPO))
    english, french = zip(*load_pairs(TATOEBA / "tatoeba-fra-eng-train.tsv"))
    print(f"training a SentencePiece tokenizer of {vocab_size} pieces on the Tatoeba training file…", file=sys.stderr)
    directory = SCRATCH / "tatoeba-tokenizer"
    return Tokenizer.train(english, french, directory, vocab_size=vocab_size), str(directory.relative_to(REPO))


# --- the machine -----------------------------------------------------------------------------


def _cpuinfo_field(name):
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model():
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_id():
    """The CPU's family and model numbers (x86: 'family 25 model 17', a Zen 4), which tell
    apart CPUs that a virtual machine shows under one name; '' where unknown."""
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model")
    return f"family {family} model {model}" if family and model else ""


def isa_path():
    """The instruction-set path the compiled kernels use here (csrc/kernels.h), or 'numpy'
    where they are not built."""
    try:
        from minitransformer import _ext
    except ImportError:
        return "numpy"
    return _ext.isa_used() or "numpy"


def machine_slug():
    """'amd-epyc-f25m17-avx512': the folder name of this machine's results."""
    words = "".join(ch if ch.isalnum() else " " for ch in cpu_model().lower()).split()
    words = [word for word in words if word not in ("processor", "cpu", "with", "core", "tm", "r")][:4]
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model")
    if family and model:
        words.append(f"f{family}m{model}")
    return "-".join(words + [isa_path()])


def results_dir():
    """bench/results/<cpu>-<isa>/ for this machine and path (made if absent)."""
    path = RESULTS / machine_slug()
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_line(info, sgemm_peak_gflops):
    """One sentence naming the machine, for every report: CPU, path, sgemm peak."""
    cpu = info["cpu_model"] + (f" ({info['cpu_id']})" if info.get("cpu_id") else "")
    return (f"{cpu}, {info['usable_cpus']} usable CPUs, kernels on the {info['isa_path']} path "
            f"(of {', '.join(info['isa_paths']) or 'none'}), NumPy float32 sgemm peak "
            f"{sgemm_peak_gflops:.0f} GFLOP/s")


def blas_libraries():
    """What threadpoolctl sees loaded: each BLAS / OpenMP library, its version and threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture", "filepath", "prefix")
    return [{key: info.get(key) for key in keep} for info in threadpool_info()]


def machine_info():
    """CPU, cores, memory, library versions and BLAS, the load, and the date, as a dict."""
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_id": cpu_id(),
        "isa_path": isa_path(),
        "isa_paths": list(_isa_paths()),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "environment": {
            name: os.environ.get(name)
            for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                         "MINITRANSFORMER_ISA", "OPENBLAS_CORETYPE")
        },
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    info["blas"] = blas_libraries()
    info["max_rss_mib_so_far"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return info


# --- output ----------------------------------------------------------------------------------


def _isa_paths():
    try:
        from minitransformer import _ext
    except ImportError:
        return ()
    return _ext.isa_paths()


def write_json(name, payload):
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def write_text(name, text):
    path = results_dir() / name
    path.write_text(text)
    return path


def markdown_table(header, rows):
    """A GitHub-flavoured Markdown table from a header list and a list of row lists."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
