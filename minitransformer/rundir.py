"""The run directory as a transaction: validate first, one writer at a time, swap in whole.

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

import ctypes
import fcntl
import os
import shutil
from pathlib import Path

from .checkpoint import checkpoint_dir, kill_point


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used as asked; the message says why and what to do."""


class RunLocked(RunDirectoryError):
    """Another process holds the run directory's lock."""


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
