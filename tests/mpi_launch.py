"""Starting `mpiexec -n P` from inside the test suite, or skipping with the reason."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mpiexec_or_skip():
    """The mpiexec beside this Python (the mpich wheel puts it in .venv/bin), else on PATH;
    skips when it or mpi4py is missing (.ci/run installs both: pip install -e '.[mpi]')."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("MPI is not installed here: pip install -e '.[mpi]' (mpi4py and MPICH's wheel)")
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpi4py is installed but no mpiexec was found: pip install mpich")
    return found


def run_mpi(n_ranks, args, timeout=120, env=None, check=True, cwd=None):
    """`python -m minitransformer.parallel.launch -n n_ranks ARGS` (mpiexec under it) -> CompletedProcess."""
    mpiexec = mpiexec_or_skip()
    full_env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT), MPIEXEC=mpiexec)
    full_env.update(env or {})
    command = [sys.executable, "-m", "minitransformer.parallel.launch", "-n", str(n_ranks), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
