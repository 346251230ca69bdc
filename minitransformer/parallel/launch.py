"""Start P ranks under mpiexec, each on its share of the cores, and name a rank that dies.

    python -m minitransformer.parallel.launch -n 2 -m minitransformer train --config toy
    python -m minitransformer.parallel.launch -n 4 my_script.py        # any script, as mpiexec would
    make train NP=2                                                     # the first line

It runs ``mpiexec -n P python -m mpi4py ARGS`` (the mpiexec beside this Python, which the
mpich wheel installs, else the one on PATH; $MPIEXEC overrides) and adds two things:

  * OMP_NUM_THREADS = cores / P for every rank, unless it is already set, so that the ranks
    do not fight over the cores (P ranks × all cores each would oversubscribe P times);
  * when a rank dies without a word (SIGKILL, the out-of-memory killer), MPICH's mpiexec
    stops the others at once but names only a pid: each rank writes its pid to a directory
    given in $MINITRANSFORMER_RANKS_DIR (world.py), and this launcher turns the pid into a
    rank in one line at the end:

    minitransformer: rank 1 of 2 (pid 4242) died without a word (signal 9: SIGKILL, as the out-of-memory killer sends); mpiexec stopped every rank

A rank that fails with an exception, or finds a collective timed out, says so itself
(world.py) before MPI_Abort; its exit code is passed on.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

RANKS_DIR_VAR = "MINITRANSFORMER_RANKS_DIR"


def find_mpiexec():
    """$MPIEXEC, else the mpiexec beside this Python (.venv/bin from the mpich wheel), else PATH."""
    if os.environ.get("MPIEXEC"):
        return os.environ["MPIEXEC"]
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    return shutil.which("mpiexec")


def command(n_ranks, args, mpiexec=None):
    """The mpiexec line that runs ``args`` (after `python -m mpi4py`) on n_ranks ranks."""
    mpiexec = mpiexec or find_mpiexec()
    if mpiexec is None:
        raise SystemExit("minitransformer: no mpiexec found: pip install -e '.[mpi]' (mpi4py and MPICH's wheel)")
    return [mpiexec, "-n", str(n_ranks), sys.executable, "-m", "mpi4py", *args]


def environment(n_ranks, ranks_dir, base=None):
    env = dict(os.environ if base is None else base)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n_ranks)))
    env[RANKS_DIR_VAR] = str(ranks_dir)
    return env


def _forward(stream, sink, seen):
    """Copy a child's output as it comes (a progress bar's \\r included), keeping its text."""
    while True:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            return
        seen.append(chunk)
        sink.buffer.write(chunk)
        sink.flush()


def who_died(output, ranks_dir, n_ranks):
    """The one-line message for a rank that mpiexec reported dead by its pid, or None."""
    found = re.search(r"PID (\d+) RUNNING AT .*?EXIT CODE: (\d+)", output, re.S)
    if not found:
        return None
    pid, code = int(found.group(1)), int(found.group(2))
    pids = {}
    for path in Path(ranks_dir).glob("rank-*"):
        try:
            pids[int(path.read_text())] = int(path.name[5:])
        except ValueError:
            continue
    who = f"rank {pids[pid]} of {n_ranks}" if pid in pids else "a rank"
    try:
        name = signal.Signals(code).name
    except ValueError:
        name = None
    how = (f"signal {code}: {name}" + (", as the out-of-memory killer sends" if code == signal.SIGKILL else "")
           if name else f"exit code {code}")
    return f"minitransformer: {who} (pid {pid}) died without a word ({how}); mpiexec stopped every rank"


def launch(n_ranks, args, env=None, stdout=None, stderr=None):
    """Run ``args`` on n_ranks ranks; returns mpiexec's exit code (after naming a dead rank)."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    with tempfile.TemporaryDirectory(prefix="minitransformer-ranks-") as ranks_dir:
        process = subprocess.Popen(command(n_ranks, args), env=environment(n_ranks, ranks_dir, env),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen_out, seen_err = [], []
        threads = [threading.Thread(target=_forward, args=(process.stdout, stdout, seen_out)),
                   threading.Thread(target=_forward, args=(process.stderr, stderr, seen_err))]
        for thread in threads:
            thread.start()
        try:
            code = process.wait()
        except KeyboardInterrupt:  # Ctrl-C reached mpiexec too, which passes it to the ranks
            code = process.wait()
        for thread in threads:
            thread.join()
        if code != 0:
            output = b"".join(seen_out + seen_err).decode("utf-8", "replace")
            message = who_died(output, ranks_dir, n_ranks)
            if message:
                print(message, file=stderr, flush=True)
    return code


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[0] != "-n" or not argv[1].isdigit():
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return launch(int(argv[1]), argv[2:])


if __name__ == "__main__":
    sys.exit(main())
