"""Run every benchmark in bench/ (each bench/bench_*.py, in name order): what `make bench` does.

    python bench/run_all.py            # all of them; results in bench/results/
    python bench/run_all.py attention  # only those whose file name contains "attention"
    python bench/run_all.py approx     # cheaper attention (bench_approx.py): trains six toy
                                       # models, about 40 minutes on 2 shared cores

Each benchmark runs in its own process, with its default settings, so that one's
threads, caches and memory peaks do not leak into the next (each script takes its own
options when run by hand: see its docstring). The exit status is non-zero when any of
them failed.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="run only benchmarks whose file name contains one of these")
    args = parser.parse_args(argv)
    scripts = sorted(BENCH.glob("bench_*.py"))
    if args.only:
        scripts = [script for script in scripts if any(word in script.name for word in args.only)]
    if not scripts:
        print("run_all: no benchmark matched", file=sys.stderr)
        return 1
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        status = subprocess.run([sys.executable, str(script)], cwd=BENCH.parent).returncode
        print(f"== {script.name}: {'ok' if status == 0 else f'FAILED (exit {status})'}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        if status != 0:
            failed.append(script.name)
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"run_all: {len(scripts)} benchmark(s) done; results in {BENCH / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
