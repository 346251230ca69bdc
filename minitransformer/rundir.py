"""The run directory as a transaction: validate first, one writer at a time, swap in whole.

    run = RunDirectory.open("runs/toy", config, resume=False, overwrite=False)  # all of the below
    with run.guarded():                       # an OSError: a RunWriteError naming the file and
        ...                                   #   the last good checkpoint; any error: abandon()
    run.saved(step)                           # after a checkpoint: swapped in at the first one
    run.abandon()                             # release; a fresh run that saved nothing leaves no trace

    lock = RunLock.acquire("runs/toy")        # a second writer gets a RunLocked naming our PID
    recover_interrupted_swap("runs/toy")      # finish a swap that a kill cut in half
    work = start_partial("runs/toy")          # a fresh run trains in runs/.toy.partial/ ...
    swap_in(work, "runs/toy")                 # ... and becomes runs/toy/ at its first checkpoint
    lock.release()

The rules, and why:
  * Nothing in the run directory is touched before the data, the config and the tokenizer
    are known to be usable (the trainer checks them first), so a typo never costs a run.
  * One writer. The lock is a sibling file, ``runs/.toy.lock``, held with ``fcntl.flock``:
    the kernel drops it when its holder dies, however it dies, so a stale lock is never a
    problem, and it stays on the same inode when the directory itself is swapped. The file
    holds the holder's PID, which the refusal quotes. Readers (translate) take no lock: every
    file they read is committed by one atomic rename.
  * A fresh run never writes into an existing run. It trains in ``runs/.toy.partial/`` and
    is swapped in once its first checkpoint exists; a run stopped before that leaves the old
    directory exactly as it was. A directory that holds a run is replaced only with
    ``--overwrite``; one holding something else is never replaced.
  * The swap is one ``renameat2(RENAME_EXCHANGE)`` on Linux (the two directories trade
    places atomically); elsewhere two renames, and ``recover_interrupted_swap`` completes
    them if a kill falls between.
  * Temporary files (".*.tmp") that a kill left behind are removed when the run resumes.
"""

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

from .checkpoint import CheckpointError, checkpoint_dir, kill_point


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used as asked; the message says why and what to do."""


class RunLocked(RunDirectoryError):
    """Another process holds the run directory's lock."""


class RunWriteError(RuntimeError):
    """A file of the run could not be written (a full disk, a file-size limit); the message
    names the file and the last good checkpoint."""


def describe_write_error(error):
    """An OSError from writing -> "<file>: <what happened>", with the usual cause named."""
    what = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        what = "the disk is full (No space left on device)"
    elif error.errno == errno.EFBIG:
        what = "the file grew past the size limit (File too large)"
    elif error.errno == errno.EDQUOT:
        what = "the disk quota is exhausted"
    return f"{error.filename or 'a file of the run'}: {what}"


def saved_config(config_path):
    """The TrainConfig that a run's config.json holds (either layout: configs.py converts
    the flat one); CheckpointError when it cannot be read."""
    from .configs import TrainConfig  # here: configs.py imports the models

    try:
        return TrainConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8"))["train"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{config_path}: unreadable ({error})") from None


def nothing_to_resume(run_dir):
    return CheckpointError(f"{run_dir}: nothing to resume: no checkpoint was written yet (no config.json); "
                           f"start the run without --resume: minitransformer train --out {run_dir}")


class RunDirectory:
    """One run's directory, written by this process alone: the lock, where the run trains
    now (``work``: the directory itself, or a fresh run's partial one until its first
    checkpoint), and the step of the last checkpoint (``saved_at``, None before the first)."""

    def __init__(self, path, work, lock, saved_at=None):
        self.path, self.work, self.lock, self.saved_at = Path(path), Path(work), lock, saved_at

    @classmethod
    def open(cls, path, config, resume, overwrite, say=print):
        """Lock ``path`` and finish what a kill interrupted; then, to resume, check that the
        run was trained with ``config`` (all but its budget), else start a fresh partial
        directory (replacing an existing run only with ``overwrite``)."""
        path = Path(path)
        lock = RunLock.acquire(path)
        try:
            recover_interrupted_swap(path, say)
            if resume:
                _check_resumable(path, config)
                removed = remove_stale_temporaries(path)
                if removed:
                    say(f"Removed {removed} temporary file(s) that an interrupted save left in {path}/")
                return cls(path, path, lock)
            return cls(path, _start_fresh(path, overwrite, say), lock)
        except BaseException:
            lock.release()
            raise

    @contextlib.contextmanager
    def guarded(self, release=False, then=""):
        """An OSError in the block: a RunWriteError naming the file and the last good
        checkpoint (and ``then``); any error: abandon(). ``release``: abandon() at the end too."""
        try:
            yield self
        except OSError as error:
            if error.filename is None:  # a write inside SentencePiece's or NumPy's code
                error.filename = str(self.work)
            message = f"{describe_write_error(error)}; {self.last_good()}{then}"
            self.abandon()
            raise RunWriteError(message) from None
        except BaseException:
            self.abandon()
            raise
        if release:
            self.abandon()

    def saved(self, step):
        """A checkpoint of ``step`` is committed; the first of a fresh run takes the run's place."""
        self.saved_at = step
        if self.work != self.path:
            swap_in(self.work, self.path)
            self.work = self.path

    def last_good(self):
        """What is safe on disk, for a message after a failure."""
        if self.saved_at is None:
            if existing_run(self.path) == "run":
                return f"no checkpoint of this run had been saved yet; the run that was in {self.path}/ is untouched"
            return "no checkpoint had been saved yet"
        return f"the last good checkpoint, step {self.saved_at} in {checkpoint_dir(self.path) / 'last.npz'}, is untouched"

    def abandon(self):
        """Give the directory up: the lock, and a fresh run's partial one if it saved nothing."""
        if self.saved_at is None and self.work != self.path:
            shutil.rmtree(self.work, ignore_errors=True)
        self.release()

    def release(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def reacquire(self):
        if self.lock is None:
            self.lock = RunLock.acquire(self.path)


def _check_resumable(run_dir, config):
    config_path = Path(run_dir) / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{run_dir}: nothing to resume (no config.json): no checkpoint was written yet; "
            "train without --resume to start it"
        )
    from .configs import BUDGET_FIELDS

    asked = config.settings()
    different = [name for name, value in saved_config(config_path).settings().items()
                 if name not in BUDGET_FIELDS and value != asked.get(name)]
    if different:
        raise CheckpointError(
            f"{config_path}: the run was trained with different settings ({', '.join(different)}); "
            "only the budget (epochs, minutes, max_steps) may change on --resume"
        )


def _start_fresh(run_dir, overwrite, say):
    """A fresh run trains in a sibling directory, swapped in at its first checkpoint; an
    existing run is replaced only with ``overwrite``, anything else never."""
    found = existing_run(run_dir)
    if found == "other":
        raise RunDirectoryError(
            f"{run_dir}: exists and is not a run directory (no config.json or checkpoints/); "
            "nothing was changed; choose another --out"
        )
    if found == "run":
        if not overwrite:
            raise RunDirectoryError(
                f"{run_dir}: already holds a run; nothing was changed. Continue it with --resume, or "
                "replace it with --overwrite (it is kept until the new run saves its first checkpoint)"
            )
        say(f"Starting a fresh run beside {run_dir}/; it replaces the run there at its first checkpoint")
    return start_partial(run_dir)


def _sibling(run_dir, suffix):
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.{suffix}"


def lock_path(run_dir):
    return _sibling(run_dir, "lock")


def partial_path(run_dir):
    return _sibling(run_dir, "partial")


def replaced_path(run_dir):
    return _sibling(run_dir, "replaced")


class RunLock:
    """An exclusive ``flock`` on ``.<run>.lock`` beside the run directory."""

    def __init__(self, handle, path):
        self.handle, self.path = handle, path

    @classmethod
    def acquire(cls, run_dir):
        run_dir = Path(run_dir)
        path = lock_path(run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunLocked(
                f"{run_dir}: another training process (PID {holder}) is writing this run directory; "
                "wait for it to finish, or train into another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return cls(handle, path)

    def release(self):
        if self.handle is not None and not self.handle.closed:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()


def existing_run(run_dir):
    """What ``run_dir`` holds: None (absent or empty), "run" (config.json or checkpoints/)
    or "other" (files that are not a run's, which nothing here will ever replace)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        return "other"
    if (run_dir / "config.json").exists() or checkpoint_dir(run_dir).is_dir():
        return "run"
    return "other" if any(run_dir.iterdir()) else None


def has_checkpoint(directory):
    return (checkpoint_dir(directory) / "last.npz").is_file() or (checkpoint_dir(directory) / "previous.npz").is_file()


def recover_interrupted_swap(run_dir, say=print):
    """Complete a swap that a kill interrupted, and clear what a killed fresh run left.
    Call it holding the lock."""
    run_dir = Path(run_dir)
    partial, replaced = partial_path(run_dir), replaced_path(run_dir)
    if not run_dir.exists() and partial.is_dir() and has_checkpoint(partial):
        # killed between the two renames of a swap: the new run is whole, roll forward
        kill_point()
        os.replace(partial, run_dir)
        say(f"note: completed the swap that a kill interrupted: {run_dir}/ is now the run that trained in {partial}/")
    if replaced.exists():
        shutil.rmtree(replaced)
    if partial.exists():
        shutil.rmtree(partial)
        say(f"note: removed {partial}/, left by a run that stopped before its first checkpoint or its swap")


def start_partial(run_dir):
    """An empty ``.<run>.partial/`` beside ``run_dir`` for a fresh run to train in."""
    partial = partial_path(run_dir)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first, second):
    """Atomically trade two paths (Linux renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: not on this kernel or file system
        return False
    raise OSError(error, os.strerror(error), str(second))


def swap_in(partial, run_dir):
    """Make ``partial`` the run directory; whatever was there before is deleted after."""
    partial, run_dir = Path(partial), Path(run_dir)
    kill_point()
    if not run_dir.exists():
        os.replace(partial, run_dir)
        return
    if _exchange(partial, run_dir):
        shutil.rmtree(partial)  # now the old run
        return
    replaced = replaced_path(run_dir)
    os.replace(run_dir, replaced)
    kill_point()
    os.replace(partial, run_dir)
    shutil.rmtree(replaced)


def remove_stale_temporaries(run_dir):
    """Delete the ".*.tmp" files that a killed save left in ``run_dir``; returns how many."""
    removed = 0
    for path in Path(run_dir).rglob(".*.tmp"):
        if path.is_file():
            path.unlink()
            removed += 1
    return removed
