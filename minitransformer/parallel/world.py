"""The world of ranks: MPI when the process was started by mpiexec, else a world of one.

    python -m minitransformer.parallel.launch -n 2 -m minitransformer train --config toy
    make train NP=2                                    # the same line
    mpiexec -n 2 .venv/bin/python -m mpi4py -m minitransformer train --config toy   # what it runs

    from minitransformer.parallel.world import get_world
    world = get_world()                  # rank, size; size 1 without mpiexec (mpi4py not even imported)
    world.allreduce_sum(buffer, "the gradient all-reduce")   # in place, every rank the same sum

Collectives never hang silently. Each is started non-blocking (Iallreduce, Ibcast) and
waited on in a loop that, every POLL_SECONDS, checks whether the other ranks' processes on
this machine are still alive (their pids were exchanged when the world was made), and
gives up after ``timeout`` seconds (MINITRANSFORMER_MPI_TIMEOUT, default 120) when they
are alive but do not come. Either way one line on stderr says which rank and which
collective, and MPI_Abort ends every rank:

    minitransformer: rank 1 of 2 (pid 4242) died during the gradient all-reduce of step 7 (killed, or out of memory); stopping every rank

A rank that raises instead prints its own line (fail()) and aborts the same way.
``python -m mpi4py`` makes an exception that escapes everything abort too, instead of
leaving the others waiting. MPICH's mpiexec kills the survivors of a rank that died at
once and prints only its pid; launch.py turns that into the rank (each rank writes its pid
where launch.py asks). The checks here are for launchers that leave the survivors running.

Environment variables the launchers set, which is how a process knows it is one of many:
PMI_SIZE/PMI_RANK (MPICH's hydra, Intel MPI), OMPI_COMM_WORLD_SIZE (Open MPI);
MPI_LOCALNRANKS and OMPI_COMM_WORLD_LOCAL_SIZE give the ranks on this machine.
"""

import os
import pickle
import socket
import sys
import time

import numpy as np

SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")
TIMEOUT_VAR = "MINITRANSFORMER_MPI_TIMEOUT"
DEFAULT_TIMEOUT = 120.0
POLL_SECONDS = 0.5
SPIN_SECONDS = 0.5
# MPI_Abort has mpiexec kill every rank at once; a rank's stderr reaches the terminal through
# mpiexec's forwarding, which a fast kill can cut before the last line is through. The
# aborting rank therefore pauses this long between printing its one line and aborting.
DRAIN_SECONDS = 1.0


def launched_size():
    """How many ranks the launcher started (1 outside mpiexec)."""
    for name in SIZE_VARS:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def local_size():
    """Ranks on this machine (the launcher's word, else all of them)."""
    for name in LOCAL_SIZE_VARS:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return launched_size()


def threads_per_rank(cores=None):
    """OpenMP threads for each rank: the machine's cores shared out, at least one."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(local_size(), 1))


def say_once(world, message, file=None):
    """Print on rank 0 only: progress and evaluation appear once, not once per rank."""
    if world.rank == 0:
        print(message, file=file if file is not None else sys.stdout, flush=True)


def world_size_note(saved_size, size):
    """The note for a run resumed on another number of ranks, or None."""
    if saved_size == size:
        return None
    return (f"note: this run was saved by {saved_size} rank(s) and resumes on {size}: the batches are shared out "
            "differently and the dropout streams start anew, so it will not repeat the uninterrupted run exactly")


class SingleWorld:
    """A world of one: every collective is the identity (what a run without mpiexec uses)."""

    rank, size, comm = 0, 1, None

    def allreduce_sum(self, buffer, what=""):
        return buffer

    def bcast_array(self, buffer, what=""):
        return buffer

    def bcast_object(self, value, what=""):
        return value

    def gather_object(self, value, what=""):
        return [value]

    def barrier(self, what=""):
        pass

    def fail(self, message, code=1):
        raise SystemExit(message)


class MPIWorld:
    """MPI_COMM_WORLD, with collectives that time out and name a dead rank."""

    def __init__(self, comm, timeout=None):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(os.environ.get(TIMEOUT_VAR, DEFAULT_TIMEOUT)) if timeout is None else timeout
        self.host = socket.gethostname()
        # who is who: (host, pid) of every rank, for telling a dead rank from a slow one
        self.peers = comm.allgather((self.host, os.getpid()))
        ranks_dir = os.environ.get("MINITRANSFORMER_RANKS_DIR")  # set by launch.py, which names the dead
        if ranks_dir and os.path.isdir(ranks_dir):
            with open(os.path.join(ranks_dir, f"rank-{self.rank}"), "w") as handle:
                handle.write(str(os.getpid()))
        self.step = None  # the training step, for the messages (set by the trainer)

    # --- waiting, with a deadline ------------------------------------------------------------

    def _dead_peers(self):
        """Ranks on this machine whose process no longer exists."""
        dead = []
        for rank, (host, pid) in enumerate(self.peers):
            if rank == self.rank or host != self.host:
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                dead.append(rank)
            except PermissionError:
                pass
        return dead

    def _where(self, what):
        return what + (f" of step {self.step}" if self.step is not None else "")

    def wait(self, request, what):
        """Wait for a non-blocking request; a dead peer or the timeout ends every rank."""
        started = time.monotonic()
        last_check = started
        while not request.Test():
            now = time.monotonic()
            if now - last_check >= POLL_SECONDS:
                last_check = now
                dead = self._dead_peers()
                if dead:
                    named = ", ".join(f"rank {rank} of {self.size} (pid {self.peers[rank][1]})" for rank in dead)
                    self.abort(f"{named} died during {self._where(what)} (killed, or out of memory); "
                               "stopping every rank")
                if now - started > self.timeout:
                    self.abort(f"rank {self.rank} of {self.size}: no answer from the other ranks within "
                               f"{self.timeout:g} s in {self._where(what)} (a rank is stuck or unreachable; "
                               f"${TIMEOUT_VAR} sets the limit); stopping every rank")
            # MPICH advances a non-blocking collective only inside calls like Test, so for the
            # first SPIN_SECONDS test without pause (a step's all-reduce is usually done by
            # then); after that, a rank waiting for a slow one sleeps between tests
            time.sleep(0 if now - started < SPIN_SECONDS else 0.01)

    def abort(self, message, code=1):
        """One line on stderr, then MPI_Abort: every rank ends."""
        from ..messages import sanitize

        print(f"minitransformer: {sanitize(message)}", file=sys.stderr, flush=True)
        time.sleep(DRAIN_SECONDS)  # let the line through mpiexec before every rank is killed
        self.comm.Abort(code)

    def fail(self, message, code=1):
        """This rank cannot go on: say which rank, and end the job."""
        self.abort(f"rank {self.rank} of {self.size} failed: {message}; stopping every rank", code)

    # --- the collectives ------------------------------------------------------------------------

    def allreduce_sum(self, buffer, what="an all-reduce"):
        """buffer (a contiguous array) -> the same array, holding the sum over every rank."""
        from mpi4py import MPI

        self.wait(self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM), what)
        return buffer

    def bcast_array(self, buffer, what="a broadcast"):
        """Rank 0's contents of ``buffer`` (a contiguous array of the same shape everywhere)."""
        self.wait(self.comm.Ibcast(buffer, root=0), what)
        return buffer

    def bcast_object(self, value, what="a broadcast"):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        payload = np.frombuffer(pickle.dumps(value), dtype=np.uint8) if self.rank == 0 else None
        length = np.array([0 if payload is None else payload.size], dtype=np.int64)
        self.bcast_array(length, what)
        if payload is None:
            payload = np.empty(int(length[0]), dtype=np.uint8)
        else:
            payload = payload.copy()
        self.bcast_array(payload, what)
        return pickle.loads(payload.tobytes()) if self.rank != 0 else value

    def gather_object(self, value, what="a gather"):
        """[every rank's ``value``] on every rank (small objects: an all-gather of pickles)."""
        payload = np.frombuffer(pickle.dumps(value), dtype=np.uint8)
        lengths = np.zeros(self.size, dtype=np.int64)
        lengths[self.rank] = payload.size
        self.allreduce_sum(lengths, what)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        everything = np.zeros(int(offsets[-1]), dtype=np.uint8)
        everything[offsets[self.rank] : offsets[self.rank + 1]] = payload
        self.allreduce_sum(everything, what)  # each rank fills its own slice; the sum puts them together
        return [pickle.loads(everything[offsets[r] : offsets[r + 1]].tobytes()) for r in range(self.size)]

    def barrier(self, what="a barrier"):
        self.wait(self.comm.Ibarrier(), what)


_world = None


def get_world():
    """The world this process belongs to: made once; MPI only when started by a launcher."""
    global _world
    if _world is None:
        if launched_size() > 1:
            try:
                from mpi4py import MPI
            except ImportError:
                raise SystemExit(
                    "minitransformer: started by mpiexec, but mpi4py is not installed: pip install -e '.[mpi]'"
                ) from None
            _world = MPIWorld(MPI.COMM_WORLD)
        else:
            _world = SingleWorld()
    return _world
