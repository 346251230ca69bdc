"""Checkpoints: save a run so that it can be resumed exactly, or used for translation.

A checkpoint is ONE file, ``<run_dir>/checkpoints/<name>.npz``, and one save is one commit:

    param.<key>          the weights
    optim.m.<key>, optim.v.<key>   Adam's two moments (absent in weights-only checkpoints)
    meta.record          a JSON text: step, epoch and batch index (the data position), the
                         dropout stream's state, the model and training configs, the metrics
                         and history so far, the format version

    save_checkpoint("runs/toy", model, optimizer, {"step": 500, "epoch": 3, ...})
    checkpoint = load_checkpoint("runs/toy/checkpoints/last.npz")
    model, tokenizer, info = load_for_inference("runs/toy")

Why one file: it is written into a temporary file in the same directory, flushed and
fsync'ed, then renamed over the old one with ``os.replace``, which is atomic on POSIX. A
reader, or a resumed run, therefore sees either the whole old checkpoint or the whole new
one: weights, optimizer state and data position can never come from two different saves,
whatever moment a kill chooses. (Format 1 wrote an .npz and a .json renamed one after the
other; a kill between the two renames made the run unresumable. It is still read.)

"last" keeps one generation behind it: a save of "last" first renames the old last.npz to
previous.npz, then renames the new file in. If last.npz is missing or damaged (a disk that
lost a write, a kill between those two renames), ``load_resumable`` falls back to
previous.npz and says so. Temporary files are named ".<name>.npz.<random>.tmp", which no
loader mistakes for a checkpoint; a resumed run removes the ones a kill left behind.

Names used by the training loop: "last" (resume from here), "previous" (the save before
it), "step-00001200" (the ring of recent weights for checkpoint averaging, written only on
schedule) and "final" (the weights that were evaluated at the end: the last ones, or the
average of the ring when that scored better).

For the fault-injection tests, the environment variable MINITRANSFORMER_KILL_AT_RENAME=N
makes the process SIGKILL itself just before its N-th rename of a commit (see ``rename``),
so that every window between two renames is hit deterministically.
"""

import functools
import json
import os
import re
import signal
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .arrays import to_numpy
from .architectures import model_config_from_dict

FORMAT_VERSION = 2
STEP_PREFIX = "step-"
KILL_AT_RENAME_VAR = "MINITRANSFORMER_KILL_AT_RENAME"
_renames_done = 0


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the path and what is wrong."""


def checkpoint_dir(run_dir):
    return Path(run_dir) / "checkpoints"


# --- writing ----------------------------------------------------------------------------------


def kill_point():
    """The fault-injection hook, called before every rename that commits something: when
    $MINITRANSFORMER_KILL_AT_RENAME is N, the N-th call SIGKILLs the process."""
    global _renames_done
    _renames_done += 1
    kill_at = os.environ.get(KILL_AT_RENAME_VAR)
    if kill_at and _renames_done == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)


def rename(source, destination):
    """``os.replace`` (atomic on POSIX), the one way a commit is made."""
    kill_point()
    os.replace(source, destination)


def _fsync_directory(directory):
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.cache
def ordinary_file_mode():
    """0o666 less the process's umask: the mode open() gives a new file. Read at the first
    write, not at import (os.umask can only be read by setting it, so it is set back at once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write, before_rename=None):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``
    (calling ``before_rename()`` first, once the new file is whole on disk).

    On any failure (including KeyboardInterrupt) the temporary file is removed and ``path``
    is left as it was. An OSError names ``path`` (its ``filename``), so that "no space left"
    says which file could not be written.
    """
    path = Path(path)
    handle = None
    try:
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
        # a temporary file is private (0600); the result should have an ordinary file's mode
        os.chmod(handle.name, ordinary_file_mode())
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if before_rename is not None:
            before_rename()
        rename(handle.name, path)
    except BaseException as error:
        if handle is not None:
            try:
                os.unlink(handle.name)
            except FileNotFoundError:
                pass
        if isinstance(error, OSError) and not isinstance(error, FileExistsError) and error.filename != str(path):
            raise OSError(error.errno, error.strerror or str(error), str(path)) from None
        raise
    _fsync_directory(path.parent)


def write_json(path, value):
    """Atomically write ``value`` as indented JSON (used for config.json and metrics.json too)."""
    text = json.dumps(value, indent=2, allow_nan=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def checkpoint_path(run_dir, name):
    return checkpoint_dir(run_dir) / f"{name}.npz"


def save_checkpoint(run_dir, model, optimizer, state, name="last"):
    """Commit ``checkpoints/<name>.npz`` with one rename; returns its path.

    state: a JSON-serializable dict; it must hold "step". optimizer may be None (weights
    only, as for the averaging ring). The model config and format version are added here.
    Saving "last" first moves the old last.npz to previous.npz (one generation kept).
    """
    if "step" not in state:
        raise ValueError("checkpoint state needs a 'step'")
    directory = checkpoint_dir(run_dir)
    step = int(state["step"])
    record = dict(state)
    record.update(
        format_version=FORMAT_VERSION,
        step=step,
        model_config=model.config.to_dict(),
        has_optimizer=optimizer is not None,
        optimizer_step_count=None if optimizer is None else int(optimizer.step_count),
    )
    text = json.dumps(record, indent=2) + "\n"  # fails here, before any file is touched, if not serializable

    arrays = {f"param.{key}": to_numpy(value) for key, value in model.params.items()}
    if optimizer is not None:
        for key, value in optimizer.state_dict().items():  # keys "m.<key>" / "v.<key>"
            arrays[f"optim.{key}"] = to_numpy(value)
    arrays["meta.record"] = np.array(text)

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.npz"

    def keep_previous():
        # the complete new file is on disk: only now step the old one back
        if name == "last" and path.exists():
            rename(path, directory / "previous.npz")

    atomic_write(path, lambda handle: np.savez(handle, **arrays), before_rename=keep_previous)
    return path


# --- reading ----------------------------------------------------------------------------------


def _paths(path):
    """A checkpoint given as .../name.npz, .../name.json or .../name -> (npz, legacy json)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def load_checkpoint(path):
    """Read a checkpoint -> {"params", "optimizer" (or None), "state", "path"}.

    Raises CheckpointError when the file is missing, damaged (zip's CRC catches flipped
    bytes) or not a checkpoint.
    """
    npz_path, json_path = _paths(path)
    if not npz_path.is_file():
        raise CheckpointError(f"{npz_path}: checkpoint file not found")
    params, optimizer, record, legacy = {}, {}, None, {}
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            for key in archive.files:
                if key.startswith("param."):
                    params[key[len("param.") :]] = archive[key]
                elif key.startswith("optim."):
                    optimizer[key[len("optim.") :]] = archive[key]
                elif key == "meta.record":
                    record = str(archive[key])
                elif key in ("meta.token", "meta.step"):
                    legacy[key] = archive[key].item()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{npz_path}: unreadable checkpoint arrays ({error})") from None
    if record is None:
        state = _legacy_record(npz_path, json_path, legacy)
    else:
        try:
            state = json.loads(record)
        except ValueError as error:
            raise CheckpointError(f"{npz_path}: unreadable checkpoint record ({error})") from None
        if not isinstance(state, dict) or "step" not in state:
            raise CheckpointError(f"{npz_path}: not a minitransformer checkpoint record (no step)")
        if state.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{npz_path}: checkpoint format {state.get('format_version')!r}, this version reads {FORMAT_VERSION}"
            )
    if not params:
        raise CheckpointError(f"{npz_path}: holds no weights")
    return {"params": params, "optimizer": optimizer or None, "state": state, "path": npz_path}


def _legacy_record(npz_path, json_path, arrays_meta):
    """The record of a format-1 checkpoint (an .npz beside a .json, paired by a token)."""
    if not json_path.is_file():
        raise CheckpointError(f"{npz_path}: holds no record (meta.record), and {json_path.name} is missing")
    try:
        state = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{json_path}: unreadable checkpoint record ({error})") from None
    if not isinstance(state, dict) or "token" not in state or "step" not in state or state.get("format_version") != 1:
        raise CheckpointError(f"{json_path}: not a minitransformer checkpoint record")
    if arrays_meta.get("meta.token") != state["token"] or arrays_meta.get("meta.step") != state["step"]:
        raise CheckpointError(
            f"{npz_path} (step {arrays_meta.get('meta.step')}) and {json_path.name} (step {state['step']}) come "
            "from different saves (a format-1 save was interrupted between its two files); use another checkpoint"
        )
    return state


def load_resumable(run_dir, say=print):
    """The checkpoint to resume ``run_dir`` from: last.npz, else previous.npz (saying why).

    A run killed before its first checkpoint has neither: the error says so, and how to
    start again.
    """
    directory = checkpoint_dir(run_dir)
    last, previous = directory / "last.npz", directory / "previous.npz"
    if not last.exists() and not previous.exists() and not (directory / "last.json").exists():
        raise CheckpointError(
            f"{run_dir}: no checkpoint was written yet (the run stopped before its first one); "
            f"start it again without --resume: minitransformer train --overwrite --out {run_dir}"
        )
    try:
        checkpoint = load_checkpoint(last)
        if checkpoint["optimizer"] is None:
            raise CheckpointError(f"{last}: holds no optimizer state; cannot resume from it")
        return checkpoint
    except CheckpointError as error:
        if not previous.exists():
            raise
        try:
            fallback = load_checkpoint(previous)
        except CheckpointError as second:
            raise CheckpointError(f"{error}; and the fallback is unusable too: {second}") from None
        say(f"warning: {error}; falling back to the previous good checkpoint, {previous} "
            f"(step {fallback['state']['step']})")
        return fallback


def model_config_of(checkpoint):
    """The ModelConfig saved in a checkpoint, or a CheckpointError saying why not."""
    try:
        return model_config_from_dict(checkpoint["state"]["model_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint['path']}: bad model config ({error})") from None


def resolve_checkpoint(run_dir_or_checkpoint):
    """A run directory or a checkpoint path -> (run_dir, checkpoint path without suffix).

    In a run directory the "final" checkpoint is preferred (what the run evaluated), then
    "last", then "previous".
    """
    path = Path(run_dir_or_checkpoint)
    if path.is_dir():
        if path.name == "checkpoints":
            path = path.parent
        directory = checkpoint_dir(path)
        if not directory.is_dir():
            raise CheckpointError(f"{path}: not a run directory (it has no checkpoints/)")
        for name in ("final", "last", "previous"):
            if (directory / f"{name}.npz").is_file():
                return path, directory / name
        raise CheckpointError(f"{directory}: holds no checkpoint (neither final.npz nor last.npz)")
    npz_path, json_path = _paths(path)
    if not npz_path.is_file():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    return npz_path.parent.parent, npz_path.with_suffix("")


def load_for_inference(run_dir_or_checkpoint, backend="auto"):
    """-> (model, tokenizer, info) for decoding. info is the checkpoint record plus
    "checkpoint" and "run_dir" paths. Raises CheckpointError on anything unusable;
    minitransformer.backends.BackendUnavailable when the backend cannot run."""
    from .architectures import make_model
    from .tokenizer import Tokenizer, TokenizerError

    run_dir, stem = resolve_checkpoint(run_dir_or_checkpoint)
    checkpoint = load_checkpoint(stem)
    config = model_config_of(checkpoint)
    try:
        model = make_model(config, backend=backend, params=checkpoint["params"])
    except ValueError as error:  # names the missing, unexpected or mis-shaped tensor
        raise CheckpointError(f"{checkpoint['path']}: the weights do not match its config: {error}") from None
    try:
        tokenizer = Tokenizer.load(Path(run_dir) / "tokenizer")
    except TokenizerError as error:
        raise CheckpointError(f"{run_dir}: {error}") from None
    check_tokenizer_matches(tokenizer, config, Path(run_dir) / "tokenizer", checkpoint["path"])
    info = dict(checkpoint["state"])
    info.update(checkpoint=str(checkpoint["path"]), run_dir=str(run_dir))
    return model, tokenizer, info


def check_tokenizer_matches(tokenizer, config, tokenizer_dir, checkpoint_file):
    """A tokenizer of another vocabulary than the checkpoint's is named as the culprit."""
    if (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size) != (config.src_vocab_size, config.tgt_vocab_size):
        raise CheckpointError(
            f"{tokenizer_dir}: this tokenizer's vocabularies ({tokenizer.src_vocab_size}, "
            f"{tokenizer.tgt_vocab_size}) do not match the ({config.src_vocab_size}, {config.tgt_vocab_size}) "
            f"that {checkpoint_file} was trained with: the run's tokenizer/ was replaced; put back its own"
        )


# --- the ring of step checkpoints, and averaging them ------------------------------------------


def step_checkpoints(run_dir, up_to=None):
    """The ring's checkpoints, oldest first, as paths without suffix (only those of steps
    ≤ ``up_to`` when given)."""
    directory = checkpoint_dir(run_dir)
    pattern = re.compile(rf"^{STEP_PREFIX}(\d+)\.npz$")
    found = []
    if directory.is_dir():
        for entry in directory.iterdir():
            match = pattern.match(entry.name)
            if match and (up_to is None or int(match.group(1)) <= up_to):
                found.append((int(match.group(1)), entry.with_suffix("")))
    return [path for _, path in sorted(found)]


def save_step_checkpoint(run_dir, model, state, keep):
    """Add the current weights to the ring and drop all but the newest ``keep``.

    Dropping early is safe for a resumed run: an entry goes only when ``keep`` newer ones
    exist, and a replay of the same steps writes those again, identically.
    """
    save_checkpoint(run_dir, model, None, state, name=f"{STEP_PREFIX}{int(state['step']):08d}")
    for stale in step_checkpoints(run_dir)[:-keep] if keep > 0 else step_checkpoints(run_dir):
        for suffix in (".npz", ".json"):  # .json: a format-1 entry's record
            stale.with_suffix(suffix).unlink(missing_ok=True)


def average_checkpoints(paths):
    """The element-wise mean of the weights of several checkpoints (Vaswani et al. average
    the last 5 or 20): the average sits nearer the middle of the valley that the last steps
    bounce around in, and often translates a little better than any single one."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    total = None
    for path in paths:
        params = load_checkpoint(path)["params"]
        if total is None:
            total = {key: value.astype(np.float64) for key, value in params.items()}
            dtypes = {key: value.dtype for key, value in params.items()}
            continue
        if set(params) != set(total):
            raise CheckpointError(f"{path}: holds different tensors from {paths[0]}; cannot average")
        for key, value in params.items():
            if value.shape != total[key].shape:
                raise CheckpointError(f"{path}: {key} has shape {value.shape}, {paths[0]} has {total[key].shape}")
            total[key] += value
    return {key: (value / len(paths)).astype(dtypes[key]) for key, value in total.items()}
