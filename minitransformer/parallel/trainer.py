"""The Trainer of train.py over the ranks of an MPI world: data-parallel training.

    make train NP=2                        # 2 processes, each on cores/2 OpenMP threads
    mpiexec -disable-auto-cleanup -n 2 .venv/bin/python -m mpi4py -m minitransformer train --config toy

Every rank runs the same loop of train.py; this subclass changes it at a few points:

  1. start: rank 0 alone touches the run directory (the lock, a fresh run's partial
     directory, the tokenizer's training, a checkpoint to resume). It then broadcasts the
     tokenizer's files and every tensor of the state (the weights, so all ranks start from
     rank 0's initialization; Adam's moments; the data position and history), so that the
     ranks need not share a file system;
  2. each step: the batch is shared out by tokens and the gradients all-reduced in one
     flat buffer (data_parallel.py); each rank draws its own dropout masks from a stream
     seeded by the global seed and its rank (rank 0's is the single-process stream);
  3. when to stop: rank 0 decides (its clock, its Ctrl-C) and broadcasts it every step, so
     every rank saves and stops at the same step;
  4. checkpoints: the ranks' dropout streams are gathered, and rank 0 alone writes, through
     the same atomic checkpoint.py as a single process. Resuming at the same world size
     continues exactly; at another size, the batches are shared out differently and the
     streams start anew, and a one-line note says so;
  5. evaluation, progress and the final evaluation: rank 0 only; the others wait for it at
     the next collective (or, at the end, at a barrier without timeout that still notices
     a dead rank 0).

A rank that fails brings the job down with one line naming it (world.py).
"""

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import backends
from ..arrays import array_module, to_numpy
from ..layers.dropout import MASK_64, DropoutStream, splitmix64
from ..configs import ConfigError
from ..progress import Progress
from ..rundir import RunDirectory
from ..stopping import Stopping
from ..tokenizer import Tokenizer
from ..train import RunWriteError, Trainer, TrainingDiverged, load_data, prepare_data
from .data_parallel import DataParallelStep
from .sequence_parallel import SequenceParallelStep, unsupported
from .world import get_world, threads_per_rank

# fault injection for the tests: "RANK:STEP" makes that rank fail at the start of that step
KILL_VAR = "MINITRANSFORMER_KILL_RANK_AT_STEP"  # SIGKILL itself (as the OOM killer would)
RAISE_VAR = "MINITRANSFORMER_FAIL_RANK_AT_STEP"  # raise an exception
HANG_VAR = "MINITRANSFORMER_HANG_RANK_AT_STEP"  # stop answering, alive (a deadlock, a stuck file system)


def trainer_class():
    """Trainer in a world of one; DataParallelTrainer when mpiexec started several ranks."""
    return DataParallelTrainer if get_world().size > 1 else Trainer


def rank_stream_seed(seed, rank):
    """The dropout stream's seed for ``rank``: rank 0 keeps the single-process seed."""
    return seed if rank == 0 else splitmix64((seed + rank) & MASK_64)


def _fault_injection(rank, step):
    for variable, action in ((KILL_VAR, "kill"), (RAISE_VAR, "raise"), (HANG_VAR, "hang")):
        wanted = os.environ.get(variable)
        if wanted and tuple(int(x) for x in wanted.split(":")) == (rank, step):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "hang":
                time.sleep(3600)
            raise RuntimeError(f"{variable}={wanted}: the injected failure")


def broadcast_tensors(world, tensors, what):
    """Rank 0's values of a dict of arrays (NumPy or CuPy), on every rank, in one flat
    message (through the host: it happens once, at the start)."""
    keys = list(tensors)
    if not keys:
        return
    flat = np.concatenate([to_numpy(tensors[key]).reshape(-1) for key in keys])  # (n,)
    world.bcast_array(flat, what)
    start = 0
    for key in keys:
        size = tensors[key].size
        xp = array_module(tensors[key])
        tensors[key][...] = xp.asarray(flat[start : start + size].reshape(tensors[key].shape))
        start += size


def gradient_world(world, backend):
    """The world the gradients are summed in: MPI's, or NCCL's on the CuPy backend."""
    if backend.name != "cupy":
        return world
    from .nccl import NcclWorld

    return NcclWorld(world)


def set_threads():
    """OMP_NUM_THREADS = cores / ranks on this machine, unless the user chose."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    try:
        from .._ext import attention

        attention.set_max_threads(threads_per_rank())
    except ImportError:
        pass


def wait_without_timeout(world, what):
    """A barrier that waits for rank 0 however long it takes (a dead rank 0 is still noticed)."""
    timeout, world.timeout = world.timeout, float("inf")
    try:
        world.barrier(what)
    finally:
        world.timeout = timeout


class AgreedStopping(Stopping):
    """Rank 0 decides when to stop (its clock, its Ctrl-C) and broadcasts it every step."""

    def __init__(self, config, world):
        super().__init__(config)
        self.world = world

    def reason(self, step, epoch, elapsed):
        reason = super().reason(step, epoch, elapsed) if self.world.rank == 0 else None
        return self.world.bcast_object(reason, "the broadcast of whether to stop")


class FollowerDirectory(RunDirectory):
    """A rank other than 0 writes no run directory: a private one for the tokenizer that
    rank 0 trained, removed at the end."""

    def __init__(self, run_dir, rank):
        super().__init__(run_dir, tempfile.mkdtemp(prefix=f"minitransformer-rank{rank}-"), lock=None)

    def saved(self, step):
        self.saved_at = step

    def abandon(self):
        shutil.rmtree(self.work, ignore_errors=True)


class DataParallelTrainer(Trainer):
    """Trainer over an MPI world; see the module docstring for what differs."""

    def __init__(self, config, run_dir, backend=None, resume=False, progress=True, out=None, overwrite=False,
                 world=None):
        self.world = world or get_world()
        self.world_size = self.world.size
        set_threads()
        self._rank_streams = None  # [stream state per rank], gathered at each checkpoint
        # rank 0's start (a tokenizer to train on a large corpus) may take longer than any
        # timeout: the others wait for it without one, a dead rank 0 still noticed
        timeout, self.world.timeout = self.world.timeout, float("inf")
        if self.world.rank == 0:
            try:
                reason = config.sequence_parallel and unsupported(config, str(backend))
                if reason:
                    raise ConfigError(f"TrainConfig.sequence_parallel cannot train with {reason}")
                super().__init__(config, run_dir, backend=backend, resume=resume, progress=progress, out=out,
                                 overwrite=overwrite)
            except BaseException:
                self.world.bcast_object(None, "the start")  # the others stop too, quietly
                raise
            tokenizer_dir = self.rundir.work / "tokenizer"
            files = {path.name: path.read_bytes() for path in sorted(tokenizer_dir.iterdir()) if path.is_file()}
            self.world.bcast_object(files, "the start (the tokenizer)")
        else:
            self._start_follower(config, run_dir, backend)
        self.stopping = AgreedStopping(config, self.world)
        # the step's forward-backward: the batch shared out (data parallel), or each source
        # sentence's positions (sequence parallel: TrainConfig.sequence_parallel)
        step_class = SequenceParallelStep if config.sequence_parallel else DataParallelStep
        self.data_parallel = step_class(gradient_world(self.world, self.backend), self.model)
        self._sync_state()
        self.world.timeout = timeout

    def _start_follower(self, config, run_dir, backend):
        """A rank other than 0: the data, the model and the tokenizer, but no run directory."""
        self.config, self.run_dir = config, Path(run_dir)
        self.backend = backends.get(backend) if backend is None or isinstance(backend, str) else backend
        self.progress = Progress(False, None, config.log_every)  # rank 0 alone speaks
        self.say, self.step_losses = self.progress.say, []
        pairs = load_data(config, self.say)
        files = self.world.bcast_object(None, "the start (the tokenizer)")
        if files is None:
            raise SystemExit(1)  # rank 0 could not start, and said why
        self.rundir = FollowerDirectory(run_dir, self.world.rank)
        (self.rundir.work / "tokenizer").mkdir()
        for name, content in files.items():
            (self.rundir.work / "tokenizer" / name).write_bytes(content)
        (self.tokenizer, self.batcher, self.valid, self.valid_subset, self.test_sets,
         self.n_train_pairs) = prepare_data(config, pairs, Tokenizer.load(self.rundir.work / "tokenizer"))
        self._start(False)

    def _sync_state(self):
        """Rank 0's weights, optimizer state, data position and history, on every rank; each
        rank's own dropout stream (as saved, when the world size is the one saved)."""
        world = self.world
        broadcast_tensors(world, self.model.params, "the broadcast of the weights")
        broadcast_tensors(world, self.optimizer.m, "the broadcast of Adam's moments")
        broadcast_tensors(world, self.optimizer.v, "the broadcast of Adam's moments")
        names = ("step", "epoch", "batch_index", "elapsed_before", "elapsed", "step_seconds", "tokens_trained",
                 "history", "evaluated_at")
        saved = self.resumed_state if world.rank == 0 else None
        saved_world = None if saved is None else (
            int(saved.get("world_size", 1)), saved["rng"].get("dropout_ranks", [saved["rng"]["dropout"]]))
        state = world.bcast_object(
            {"values": {name: getattr(self, name) for name in names}, "window": self.window.state(),
             "saved_at": self.rundir.saved_at, "adam_steps": self.optimizer.step_count, "seed": self.rng.seed,
             "calls": self.rng.calls, "saved_world": saved_world},
            "the broadcast of the training state")
        if world.rank != 0:
            for name, value in state["values"].items():
                setattr(self, name, value)
            self.window = type(self.window).from_state(state["window"])
            self.rundir.saved_at, self.optimizer.step_count = state["saved_at"], state["adam_steps"]
        saved_world = state["saved_world"]
        if saved_world is not None and saved_world[0] == world.size:
            self.rng = DropoutStream.from_state(saved_world[1][world.rank])  # exactly where this rank was
        else:
            self.rng = DropoutStream(rank_stream_seed(state["seed"], self.data_parallel.stream_rank),
                                     calls=state["calls"])

    # --- the hooks of train.py's loop -------------------------------------------------------------

    def train(self):
        """The loop of train.py; an error that is this rank's alone ends the job, naming it."""
        try:
            return super().train()
        except TrainingDiverged:
            if self.world.rank != 0:
                raise SystemExit(1) from None  # every rank sees the same global loss; rank 0 says it
            raise
        except (RunWriteError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # noqa: BLE001: anything else is a failure of this rank
            self.world.fail(f"{type(error).__name__}: {error}")

    def _loss_and_grads(self, model, batch, smoothing, rng):
        self.world.step = self.step + 1
        _fault_injection(self.world.rank, self.step + 1)
        return self.data_parallel.loss_and_grads(model, batch, smoothing, rng)

    def _state(self, elapsed):
        state = super()._state(elapsed)
        state["world_size"] = self.world.size
        if self._rank_streams is not None:
            state["rng"]["dropout_ranks"] = self._rank_streams
        return state

    def save(self, elapsed):
        self._rank_streams = self.world.gather_object(self.rng.state(), "the gather of the dropout streams")
        if self.world.rank == 0:
            super().save(elapsed)
        else:
            self.rundir.saved(self.step)

    def _evaluate_during_training(self, elapsed):
        if self.world.rank == 0:
            super()._evaluate_during_training(elapsed)
        else:
            self.evaluated_at = self.step
        # an evaluation may outlast the collectives' timeout: wait for it without one
        wait_without_timeout(self.world, "the evaluation on rank 0")

    def finish(self):
        """Rank 0 evaluates and writes the metrics; the others wait for it to end."""
        metrics = super().finish() if self.world.rank == 0 else None
        wait_without_timeout(self.world, "the final evaluation on rank 0")
        return metrics
