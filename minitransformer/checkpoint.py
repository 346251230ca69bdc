"""Checkpoints: save a run so that it can be resumed exactly, or used for translation.

A checkpoint is a pair of files in ``<run_dir>/checkpoints/``:

    <name>.npz    the arrays: weights under "param.<key>", Adam's moments under
                  "optim.m.<key>" / "optim.v.<key>", and "meta.token" / "meta.step"
    <name>.json   everything else: step, epoch and batch index (the data position), the
                  random generators' states, the model and training configs, the metrics so
                  far, the format version, and the same token and step as the npz

    save_checkpoint("runs/toy", model, optimizer, {"step": 500, "epoch": 3, ...})
    checkpoint = load_checkpoint("runs/toy/checkpoints/last.json")
    model, tokenizer, info = load_for_inference("runs/toy")

Why two files and a token: each file is written atomically (into a temporary file in the
same directory, flushed and fsync'ed, then renamed over the old one with ``os.replace``,
which is atomic on POSIX), so a reader never sees half a file, and a write interrupted at
any point leaves the previous file whole. The npz is renamed first and the json last, so
the json is the commit record. If a crash falls exactly between the two renames, the
directory holds a new npz beside an old json; the random token stored in both tells the
loader the two do not belong together, and it refuses them instead of mixing weights of one
step with the optimizer state or data position of another. Temporary files are named
".<name>.npz.<random>.tmp", which no loader mistakes for a checkpoint.

Names used by the training loop: "last" (resume from here), "step-00001200" (a small ring
of recent weights, for checkpoint averaging) and "final" (the weights that were evaluated
at the end: the last ones, or the average of the ring when that scored better).
"""

import json
import os
import re
import secrets
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .arrays import to_numpy
from .config import ModelConfig

FORMAT_VERSION = 1
STEP_PREFIX = "step-"
# the process's umask, read once (os.umask can only be read by setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the path and what is wrong."""


def checkpoint_dir(run_dir):
    return Path(run_dir) / "checkpoints"


# --- writing ----------------------------------------------------------------------------------


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


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    On any failure (including KeyboardInterrupt) the temporary file is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        # a temporary file is private (0600); the result should have an ordinary file's mode
        os.chmod(handle.name, 0o666 & ~_UMASK)
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        try:
            os.unlink(handle.name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def write_json(path, value):
    """Atomically write ``value`` as indented JSON (used for config.json and metrics.json too)."""
    text = json.dumps(value, indent=2, allow_nan=True) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def save_checkpoint(run_dir, model, optimizer, state, name="last"):
    """Write ``checkpoints/<name>.npz`` then ``checkpoints/<name>.json``; returns the json path.

    state: a JSON-serializable dict; it must hold "step". optimizer may be None (weights
    only, as for the averaging ring). The model config and format version are added here.
    """
    if "step" not in state:
        raise ValueError("checkpoint state needs a 'step'")
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    step = int(state["step"])

    arrays = {f"param.{key}": to_numpy(value) for key, value in model.params.items()}
    if optimizer is not None:
        for key, value in optimizer.state_dict().items():  # keys "m.<key>" / "v.<key>"
            arrays[f"optim.{key}"] = to_numpy(value)
    arrays["meta.token"] = np.array(token)
    arrays["meta.step"] = np.array(step, dtype=np.int64)

    record = dict(state)
    record.update(
        format_version=FORMAT_VERSION,
        token=token,
        step=step,
        model_config=model.config.to_dict(),
        has_optimizer=optimizer is not None,
        optimizer_step_count=None if optimizer is None else int(optimizer.step_count),
    )
    text = json.dumps(record, indent=2) + "\n"  # fails here, before any file is touched, if not serializable

    atomic_write(directory / f"{name}.npz", lambda handle: np.savez(handle, **arrays))
    atomic_write(directory / f"{name}.json", lambda handle: handle.write(text.encode("utf-8")))
    return directory / f"{name}.json"


# --- reading ----------------------------------------------------------------------------------


def _pair_paths(path):
    """A checkpoint given as .../name.json, .../name.npz or .../name -> (npz, json)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def load_checkpoint(path):
    """Read a checkpoint pair -> {"params", "optimizer" (or None), "state", "path"}.

    Raises CheckpointError when a file is missing or unreadable, or the two files come from
    different saves.
    """
    npz_path, json_path = _pair_paths(path)
    for required in (json_path, npz_path):
        if not required.is_file():
            raise CheckpointError(f"{required}: checkpoint file not found")
    try:
        state = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{json_path}: unreadable checkpoint record ({error})") from None
    if not isinstance(state, dict) or "token" not in state or "step" not in state:
        raise CheckpointError(f"{json_path}: not a minitransformer checkpoint record (no token/step)")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path}: checkpoint format {state.get('format_version')!r}, this version reads {FORMAT_VERSION}"
        )
    params, optimizer = {}, {}
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            token = str(archive["meta.token"])
            step = int(archive["meta.step"])
            for key in archive.files:
                if key.startswith("param."):
                    params[key[len("param.") :]] = archive[key]
                elif key.startswith("optim."):
                    optimizer[key[len("optim.") :]] = archive[key]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{npz_path}: unreadable checkpoint arrays ({error})") from None
    if token != state["token"] or step != state["step"]:
        raise CheckpointError(
            f"{npz_path} (step {step}) and {json_path.name} (step {state['step']}) come from different "
            "saves (a save was interrupted between its two files); use another checkpoint"
        )
    if not params:
        raise CheckpointError(f"{npz_path}: holds no weights")
    return {"params": params, "optimizer": optimizer or None, "state": state, "path": json_path}


def model_config_of(checkpoint):
    """The ModelConfig saved in a checkpoint, or a CheckpointError saying why not."""
    try:
        return ModelConfig.from_dict(checkpoint["state"]["model_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint['path']}: bad model config ({error})") from None


def resolve_checkpoint(run_dir_or_checkpoint):
    """A run directory or a checkpoint path -> (run_dir, checkpoint path without suffix).

    In a run directory the "final" checkpoint is preferred (what the run evaluated), then "last".
    """
    path = Path(run_dir_or_checkpoint)
    if path.is_dir():
        if path.name == "checkpoints":
            path = path.parent
        directory = checkpoint_dir(path)
        if not directory.is_dir():
            raise CheckpointError(f"{path}: not a run directory (it has no checkpoints/)")
        for name in ("final", "last"):
            if (directory / f"{name}.json").is_file():
                return path, directory / name
        raise CheckpointError(f"{directory}: holds no checkpoint (neither final.json nor last.json)")
    npz_path, json_path = _pair_paths(path)
    if not json_path.is_file() and not npz_path.is_file():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    return json_path.parent.parent, json_path.with_suffix("")


def load_for_inference(run_dir_or_checkpoint, backend="auto"):
    """-> (model, tokenizer, info) for decoding. info is the checkpoint record plus
    "checkpoint" and "run_dir" paths. Raises CheckpointError on anything unusable;
    minitransformer.backends.BackendUnavailable when the backend cannot run."""
    from .model import make_model
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
    if (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size) != (config.src_vocab_size, config.tgt_vocab_size):
        raise CheckpointError(
            f"{run_dir}: the tokenizer's vocabularies ({tokenizer.src_vocab_size}, {tokenizer.tgt_vocab_size}) "
            f"do not match the model's ({config.src_vocab_size}, {config.tgt_vocab_size})"
        )
    info = dict(checkpoint["state"])
    info.update(checkpoint=str(checkpoint["path"]), run_dir=str(run_dir))
    return model, tokenizer, info


# --- the ring of step checkpoints, and averaging them ------------------------------------------


def step_checkpoints(run_dir):
    """The ring's checkpoints, oldest first, as paths without suffix."""
    directory = checkpoint_dir(run_dir)
    pattern = re.compile(rf"^{STEP_PREFIX}(\d+)\.json$")
    found = []
    if directory.is_dir():
        for entry in directory.iterdir():
            match = pattern.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry.with_suffix("")))
    return [path for _, path in sorted(found)]


def save_step_checkpoint(run_dir, model, state, keep):
    """Add the current weights to the ring and drop all but the newest ``keep``."""
    save_checkpoint(run_dir, model, None, state, name=f"{STEP_PREFIX}{int(state['step']):08d}")
    for stale in step_checkpoints(run_dir)[:-keep] if keep > 0 else step_checkpoints(run_dir):
        for suffix in (".json", ".npz"):  # json first: a half-deleted pair is then not listed
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
