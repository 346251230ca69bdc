"""Training: the recipe of "Attention Is All You Need" (section 5), on one machine.

    minitransformer train                               # the toy config, into runs/toy/
    minitransformer train --config tatoeba              # real Tatoeba pairs, 10 minutes: runs/tatoeba/
    minitransformer train --data pairs.tsv --minutes 5  # any English<TAB>French file: runs/toy-pairs/
    minitransformer train --resume                      # continue runs/toy/ exactly where it stopped
    minitransformer train --backend numpy --seed 1 --out runs/seed1
    make train NP=2                                     # data parallel over 2 MPI processes: parallel/trainer.py

    from minitransformer.configs import TOY
    from minitransformer.train import Trainer
    trainer = Trainer(TOY, "runs/toy")
    trainer.train()            # the loop; returns why it stopped
    metrics = trainer.finish() # final weights, test BLEU, metrics.json, curves.png

The recipe:
  1. data: sentence pairs from tab-separated files; valid/test held out by English source
     when no file is given for them (so a held-out source is never trained on);
  2. a shared BPE vocabulary (SentencePiece), learned from the training split only;
  3. batches of similar-length pairs under a budget of padded tokens, shuffled each epoch;
  4. each step: the learning rate of the warmup + 1/√step schedule; forward and backward
     with dropout and label-smoothed cross-entropy; the gradient's global norm clipped;
     one Adam step (β₁ = 0.9, β₂ = 0.98, ε = 1e-9);
  5. every eval_every steps: validation loss and greedy-decoding BLEU on a subset of the
     valid sources, with a few sample translations; every checkpoint_every steps: a
     checkpoint to resume from, and one more entry in the ring for averaging;
  6. at the end: the last weights, or the average of the ring when that scores a better
     valid BLEU; BLEU on the full valid and test sets; metrics.json and curves.png.

The run directory: config.json (model + training config), tokenizer/, checkpoints/
(last, previous, final, step-*), metrics.json (written at every evaluation, so a stopped
run still has one) and curves.png. Ctrl-C or SIGTERM stops after the current step and saves
a checkpoint; `--resume` continues with the same weights, optimizer state, data position,
random stream and half-filled log window, so the resumed run computes the very same
losses, history, final weights and BLEU as one that never stopped.

The run directory is a transaction (minitransformer/rundir.py): the data, config and
tokenizer are checked before it is touched; one process writes it at a time (a lock); a
fresh run trains beside it and is swapped in at its first checkpoint, and replaces an
existing run only with --overwrite. docs/09-training.md lists what survives what.
"""

import contextlib
import errno
import json
import shutil
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import backends
from .architectures import NAMES as ARCHITECTURES
from .architectures import make_model
from .batching import Batcher, encode_pairs
from .checkpoint import (
    CheckpointError,
    atomic_write,
    average_checkpoints,
    check_tokenizer_matches,
    checkpoint_dir,
    load_resumable,
    model_config_of,
    save_checkpoint,
    save_step_checkpoint,
    step_checkpoints,
    write_json,
)
from .configs import BUDGET_FIELDS, ConfigError, TrainConfig, get_config
from .data import DataError, load_pairs, split_by_source
from .evaluate import EvalSet, corpus_bleu, mean_loss, translate_sentences
from .layers.dropout import DropoutStream
from .messages import sanitize
from .optim import Adam
from .rundir import (
    RunDirectoryError,
    RunLock,
    existing_run,
    has_checkpoint,
    partial_path,
    recover_interrupted_swap,
    remove_stale_temporaries,
    start_partial,
    swap_in,
)
from .step import (  # noqa: F401  (TrainingDiverged: raised from here)
    Recipe,
    TrainingDiverged,
    train_step,
    whole_batch_loss_and_grads,
)
from .tokenizer import Tokenizer

PROJECT_ROOT = Path(__file__).resolve().parents[1]


PACKAGE_DATA = Path(__file__).resolve().parent / "corpus" / "data"
# what SIGINT and SIGTERM stop a run with: the shell's codes, 128 + the signal's number
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class RunWriteError(RuntimeError):
    """A file of the run could not be written (a full disk, a file-size limit); the message
    names the file and the last good checkpoint."""


def resolve_data_path(path):
    """A relative data path is looked up in the working directory, then in the project root
    (so `make train` and a run from another directory find data/ and ../shared/data), then,
    for the toy corpus data/toy-*.tsv, in the copy that a pip-installed package carries
    (minitransformer/corpus/data/, put there by setup.py)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    beside_project = PROJECT_ROOT / path
    if beside_project.exists():
        return beside_project
    packaged = PACKAGE_DATA / path.name
    if path.parent == Path("data") and packaged.is_file():
        return packaged
    return path


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


# --- the trainer ------------------------------------------------------------------------------


class LogWindow:
    """The steps since the last log entry: their mean loss and their tokens per second.

    A checkpoint saves it, so that a run resumed in the middle of a window logs the same
    mean over the same steps as one that never stopped."""

    def __init__(self):
        self.loss, self.steps, self.tokens, self.seconds = 0.0, 0, 0, 0.0

    def state(self):
        return {"loss": self.loss, "steps": self.steps, "tokens": self.tokens, "seconds": self.seconds}

    @classmethod
    def from_state(cls, state):
        window = cls()
        window.loss, window.steps = float(state["loss"]), int(state["steps"])
        window.tokens, window.seconds = int(state["tokens"]), float(state["seconds"])
        return window

    def add(self, loss, tokens, seconds):
        self.loss += loss
        self.steps += 1
        self.tokens += tokens
        self.seconds += seconds

    @property
    def mean_loss(self):
        return self.loss / max(self.steps, 1)

    @property
    def tokens_per_second(self):
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class Trainer:
    """One training run in one run directory. See the module docstring for the recipe."""

    def __init__(self, config: TrainConfig, run_dir, backend=None, resume=False, progress=True, out=None,
                 overwrite=False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.backend = backends.get(backend) if backend is None or isinstance(backend, str) else backend
        self.progress = progress
        self.out = out if out is not None else sys.stdout
        self.stop_requested = False  # set by the first Ctrl-C or SIGTERM
        self.stop_signal = None  # which of the two stopped the run
        self.saving = False  # a second signal waits while a checkpoint is being committed
        self.step_losses = []  # every step's loss in this process (the resume test compares them)
        self.saved_at = None  # the step of the last checkpoint, None before the first
        self.lock = None
        # 1. validate everything that can be checked without touching the run directory:
        #    the config (checked when it was built), the data files, the pairs that fit
        pairs = self._load_data()
        # 2. one writer: the lock; then finish whatever a kill interrupted
        self.lock = RunLock.acquire(self.run_dir)
        try:
            recover_interrupted_swap(self.run_dir, self.say)
            if resume:
                self._check_resumable()
                removed = remove_stale_temporaries(self.run_dir)
                if removed:
                    self.say(f"Removed {removed} temporary file(s) that an interrupted save left in {self.run_dir}/")
                self.work_dir = self.run_dir
            else:
                self.work_dir = self._start_fresh_directory(overwrite)
            # 3. the tokenizer (trained into the work directory, never into an existing run)
            try:
                self._prepare_data(resume, pairs)
                self._build(resume)
            except OSError as error:
                if error.filename is None:  # a write inside SentencePiece's or NumPy's code
                    error.filename = str(self.work_dir)
                raise RunWriteError(f"{describe_write_error(error)}; {self._last_good()}") from None
        except BaseException:
            self._abandon()
            raise

    def say(self, message):
        """Print a line without breaking the progress bar; untrusted text is made inert."""
        tqdm.write(sanitize(message), file=self.out)

    def _abandon(self):
        """Give up the run directory: a fresh run that saved nothing leaves no trace."""
        if self.saved_at is None and getattr(self, "work_dir", None) is not None and self.work_dir != self.run_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.close()

    def close(self):
        """Release the run directory's lock (train() and finish() do, and the kernel at exit)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # --- setup --------------------------------------------------------------------------------

    def _check_resumable(self):
        config_path = self.run_dir / "config.json"
        if not config_path.is_file():
            raise CheckpointError(
                f"{self.run_dir}: nothing to resume (no config.json): no checkpoint was written yet; "
                "train without --resume to start it"
            )
        saved = TrainConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8"))["train"])
        different = [
            name
            for name, value in saved.to_dict().items()
            if name not in BUDGET_FIELDS and value != getattr(self.config, name)
        ]
        if different:
            raise CheckpointError(
                f"{config_path}: the run was trained with different settings ({', '.join(different)}); "
                "only the budget (epochs, minutes, max_steps) may change on --resume"
            )

    def _start_fresh_directory(self, overwrite):
        """A fresh run trains in a sibling directory, swapped in at its first checkpoint;
        an existing run is replaced only with ``overwrite``, anything else never."""
        found = existing_run(self.run_dir)
        if found == "other":
            raise RunDirectoryError(
                f"{self.run_dir}: exists and is not a run directory (no config.json or checkpoints/); "
                "nothing was changed; choose another --out"
            )
        if found == "run":
            if not overwrite:
                raise RunDirectoryError(
                    f"{self.run_dir}: already holds a run; nothing was changed. Continue it with --resume, or "
                    "replace it with --overwrite (it is kept until the new run saves its first checkpoint)"
                )
            self.say(f"Starting a fresh run beside {self.run_dir}/; it replaces the run there at its first checkpoint")
        return start_partial(self.run_dir)

    def _load_data(self):
        """Read and check every data file -> (train, valid, test sets) pairs; DataError on problems."""
        config = self.config
        given = [path for path in (config.train_data, config.valid_data, config.test_data,
                                   config.compositional_test_data) if path is not None]
        if any(PACKAGE_DATA in resolve_data_path(path).parents for path in given):
            self.say(f"Reading the toy corpus shipped with the package, in {PACKAGE_DATA}/")
        train_pairs = load_pairs(resolve_data_path(config.train_data))
        # held-out parts, by English source, for whatever has no file of its own; the split
        # does not depend on the training seed, so runs with other seeds share a test set
        n_valid = config.held_out_sources if config.valid_data is None else 0
        n_test = config.held_out_sources if config.test_data is None else 0
        if n_valid or n_test:
            train_pairs, held_valid, held_test = split_by_source(train_pairs, n_valid, n_test, seed=0)
        valid_pairs = held_valid if config.valid_data is None else load_pairs(resolve_data_path(config.valid_data))
        test_sets = {"test": held_test if config.test_data is None else load_pairs(resolve_data_path(config.test_data))}
        if config.compositional_test_data is not None:
            test_sets["test_compositional"] = load_pairs(resolve_data_path(config.compositional_test_data))
        if not train_pairs:
            raise DataError(f"{config.train_data}: no pair is left to train on once valid and test are held out")
        if not valid_pairs:
            raise DataError(
                f"{config.train_data}: too few distinct English sources ({len({s for s, _ in train_pairs})}) "
                "to hold out a validation set; give more pairs, or valid_data in the config"
            )
        return train_pairs, valid_pairs, test_sets

    def _prepare_data(self, resume, pairs):
        config = self.config
        train_pairs, valid_pairs, test_sets = pairs
        tokenizer_dir = self.work_dir / "tokenizer"
        if resume:
            self.tokenizer = Tokenizer.load(tokenizer_dir)
        else:
            self.say(f"Training a {config.tokenizer_model_type.upper()} vocabulary of {config.vocab_size} pieces")
            self.tokenizer = Tokenizer.train(
                [source for source, _ in train_pairs],
                [target for _, target in train_pairs],
                tokenizer_dir,
                vocab_size=config.vocab_size,
                shared=config.shared_vocab,
                seed=config.seed,
                model_type=config.tokenizer_model_type,
            )
        examples, _ = encode_pairs(train_pairs, self.tokenizer, config.max_len, name=str(config.train_data))
        if not examples:
            raise DataError(f"{config.train_data}: none of its {len(train_pairs)} training pairs fits within "
                            f"max_len={config.max_len} pieces; raise max_len in the config")
        self.batcher = Batcher(examples, config.max_tokens, seed=config.seed, pad_id=self.tokenizer.pad_id,
                               bos_id=self.tokenizer.bos_id, eos_id=self.tokenizer.eos_id)
        self.valid = EvalSet.from_pairs("valid", valid_pairs, self.tokenizer, config.max_len)
        if not self.valid.sources:
            raise DataError(f"{config.valid_data or config.train_data}: none of its {len(valid_pairs)} validation "
                            f"pairs fits within max_len={config.max_len} pieces; raise max_len in the config")
        self.valid_subset = self.valid.subset(config.eval_sentences, self.tokenizer)
        self.test_sets = {
            name: EvalSet.from_pairs(name, pairs, self.tokenizer, config.max_len)
            for name, pairs in test_sets.items()
            if pairs
        }
        self.n_train_pairs = len(examples)

    def _build(self, resume):
        config = self.config
        model_config = config.model_config(self.tokenizer.src_vocab_size, self.tokenizer.tgt_vocab_size)
        # the dropout stream: counter-based (layers/dropout.py), keyed by a child of the seed,
        # independent of the initialization's; the same masks on every backend
        self.rng = DropoutStream(int(np.random.SeedSequence(config.seed).spawn(1)[0].generate_state(1, np.uint64)[0]))
        self.step, self.epoch, self.batch_index = 0, 0, 0
        self.elapsed_before = 0.0  # seconds trained by earlier processes of this run
        self.step_seconds = 0.0  # seconds inside training steps (for tokens/s)
        self.tokens_trained = 0  # non-pad source + target tokens trained on
        self.history = {"train": [], "valid": []}
        self.recipe = Recipe.of(config)  # the numbers of section 5 that each step uses
        self.window = LogWindow()  # the steps since the last history entry
        if not resume:
            self.model = make_model(model_config, seed=config.seed, backend=self.backend)
            self.optimizer = Adam(self.model.params, config.beta1, config.beta2, config.eps, config.weight_decay)
            write_json(self.work_dir / "config.json", {"train": config.to_dict(), "model": model_config.to_dict()})
        else:
            checkpoint = load_resumable(self.run_dir, self.say)
            saved_config = model_config_of(checkpoint)
            # a replaced tokenizer/ is named as such, not blamed on the config
            check_tokenizer_matches(self.tokenizer, saved_config, self.run_dir / "tokenizer", checkpoint["path"])
            if saved_config != model_config:
                raise CheckpointError(f"{checkpoint['path']}: its model config differs from the run's config.json")
            try:
                self.model = make_model(model_config, backend=self.backend, params=checkpoint["params"])
            except ValueError as error:
                raise CheckpointError(f"{checkpoint['path']}: {error}") from None
            if checkpoint["optimizer"] is None:
                raise CheckpointError(f"{checkpoint['path']}: holds no optimizer state; cannot resume from it")
            state = checkpoint["state"]
            self.optimizer = Adam(self.model.params, config.beta1, config.beta2, config.eps, config.weight_decay)
            try:
                self.optimizer.load_state_dict(checkpoint["optimizer"], state["optimizer_step_count"])
                self.step = state["step"]
                self.epoch, self.batch_index = state["data_position"]["epoch"], state["data_position"]["batch"]
                self._restore_dropout_stream(state["rng"]["dropout"])
                self.elapsed_before = state["train_seconds"]
                self.step_seconds = state["step_seconds"]
                self.tokens_trained = state["tokens_trained"]
                self.history = state["history"]
                self.window = LogWindow.from_state(state["log_window"])
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(f"{checkpoint['path']}: cannot resume from it ({type(error).__name__}: {error})") from None
            self.saved_at = self.step
            self.say(f"Resuming {self.run_dir} at step {self.step} (epoch {self.epoch}, batch {self.batch_index})")
            self._resumed(state)
        self.evaluated_at = self.history["valid"][-1]["step"] if self.history["valid"] else None

    # --- the state that a checkpoint saves ------------------------------------------------------

    def _state(self, elapsed):
        return {
            "step": self.step,
            "epoch": self.epoch,
            # the next batch to train on: index into the batch order of that epoch
            "data_position": {"epoch": self.epoch, "batch": self.batch_index},
            "rng": {"dropout": self.rng.state()},
            "train_config": self.config.to_dict(),
            "train_seconds": elapsed,
            "step_seconds": self.step_seconds,
            "tokens_trained": self.tokens_trained,
            "history": self.history,
            "log_window": self.window.state(),
            "metrics": {key: value for key, value in self._metrics(elapsed).items() if key != "history"},
            "backend": self.backend.name,
        }

    def save(self, elapsed):
        """On schedule, one more entry in the averaging ring; then checkpoints/last, to resume
        from. The ring comes first and only on schedule, so a Ctrl-C adds no entry and a kill
        between the two leaves an entry that the resumed run rewrites, identically."""
        state = self._state(elapsed)
        self.saving = True
        try:
            if self.step > 0 and self.step % self.config.checkpoint_every == 0:
                save_step_checkpoint(self.work_dir, self.model, state, keep=self.config.keep_checkpoints)
            save_checkpoint(self.work_dir, self.model, self.optimizer, state, name="last")
            self.saved_at = self.step
            if self.work_dir != self.run_dir:
                # the first checkpoint of a fresh run: now it may take the run directory's place
                swap_in(self.work_dir, self.run_dir)
                self.work_dir = self.run_dir
        finally:
            self.saving = False

    def _metrics(self, elapsed, final=None):
        last_valid = self.history["valid"][-1] if self.history["valid"] else {}
        metrics = {
            "config": self.config.name,
            "backend": self.backend.name,
            "steps": self.step,
            "epochs": round(self.epoch + self.batch_index / max(self.batcher.batches_per_epoch(self.epoch), 1), 3),
            "parameters": self.model.num_parameters(),
            "train_pairs": self.n_train_pairs,
            "train_seconds": round(elapsed, 1),
            "tokens_per_second": round(self.tokens_trained / self.step_seconds, 1) if self.step_seconds else None,
            "valid_loss": last_valid.get("loss"),
            "valid_bleu": last_valid.get("bleu"),
            "test_bleu": None,
            "finished": False,
        }
        if final:
            metrics.update(final, finished=True)
        metrics["history"] = self.history
        return metrics

    # --- evaluation during training -------------------------------------------------------------

    def evaluate(self, eval_set, samples=0):
        """-> {"loss", "bleu"} on ``eval_set``, printing ``samples`` translations."""
        loss = mean_loss(self.model, eval_set.examples, self.tokenizer.pad_id, self.config.max_tokens)
        hypotheses = translate_sentences(self.model, self.tokenizer, eval_set.sources)
        bleu = corpus_bleu(hypotheses, eval_set.references)
        for source, references, hypothesis in list(zip(eval_set.sources, eval_set.references, hypotheses))[:samples]:
            self.say(f"  source:     {source}")
            self.say(f"  reference:  {references[0]}" + (f"  (+{len(references) - 1} more)" if len(references) > 1 else ""))
            self.say(f"  hypothesis: {hypothesis}")
        return {"loss": loss, "bleu": bleu}

    def _evaluate_during_training(self, elapsed):
        result = self.evaluate(self.valid_subset, samples=self.config.samples)
        self.history["valid"].append({"step": self.step, "loss": result["loss"], "bleu": result["bleu"]})
        self.evaluated_at = self.step
        self.say(
            f"step {self.step}: valid loss {result['loss']:.3f}, valid BLEU {result['bleu']:.1f} "
            f"({len(self.valid_subset.sources)} sources, greedy), {elapsed / 60:.1f} min"
        )
        write_json(self.work_dir / "metrics.json", self._metrics(elapsed))
        self._plot()

    def _plot(self):
        from .plot import plot_curves

        # drawn into memory, then committed like every other file: a full disk leaves the old one
        atomic_write(self.work_dir / "curves.png",
                     lambda handle: plot_curves(self.history, handle, title=f"{self.config.name}: {self.run_dir}"))

    # --- the loop -----------------------------------------------------------------------------

    def _stop_reason(self, elapsed):
        config = self.config
        if self.stop_requested:
            return "interrupted"
        if config.max_steps is not None and self.step >= config.max_steps:
            return "max_steps"
        if config.epochs is not None and self.epoch >= config.epochs:
            return "epochs"
        if config.minutes is not None and elapsed >= config.minutes * 60.0:
            return "minutes"
        return None

    def _restore_dropout_stream(self, saved):
        """The stream from a checkpoint's state; a checkpoint from before the counter-based
        stream (a NumPy bit-generator state) resumes with a fresh stream, and says so."""
        if "bit_generator" in saved:
            self.say("note: this checkpoint predates the counter-based dropout stream; training "
                     "resumes with new dropout masks, so it will not repeat the uninterrupted run exactly")
            self.rng = DropoutStream(self.rng.seed, calls=self.step)
        else:
            self.rng = DropoutStream.from_state(saved)

    def _resumed(self, state):
        """A checkpoint saved by several ranks (parallel/trainer.py) resumes here with a note."""
        from .parallel.world import world_size_note

        note = world_size_note(state.get("world_size", 1), 1)
        if note:
            self.say(note)

    def _loss_and_grads(self, model, batch, smoothing, rng):
        """The step's forward-backward, which train_step calls: the loss; the gradients in
        model.grads (the data-parallel trainer, parallel/trainer.py, shares the batch out)."""
        return whole_batch_loss_and_grads(model, batch, smoothing, rng)

    def _last_good(self):
        if self.saved_at is None:
            if existing_run(self.run_dir) == "run":
                return f"no checkpoint of this run had been saved yet; the run that was in {self.run_dir}/ is untouched"
            return "no checkpoint had been saved yet"
        return f"the last good checkpoint, step {self.saved_at} in {checkpoint_dir(self.run_dir) / 'last.npz'}, is untouched"

    def _step(self, batch):
        """train_step (step.py) on ``batch``, then the data position moves on; -> StepResult.

        What a run adds to the recipe: a Ctrl-C before the update rewinds the dropout stream,
        so the resumed run redoes the step with the same masks; one during the update or
        the move (the weights half changed) marks the step as not savable; a loss or
        gradient that is not finite names the last good checkpoint."""
        rng_before, updates_before = self.rng.state(), self.optimizer.step_count
        try:
            result = train_step(self.model, batch, self.optimizer, self.step + 1, self.recipe, self.rng,
                                loss_and_grads=self._loss_and_grads)
            self.step += 1
            self.batch_index += 1
            if self.batch_index == self.batcher.batches_per_epoch(self.epoch):
                self.epoch, self.batch_index = self.epoch + 1, 0
        except KeyboardInterrupt:
            if self.optimizer.step_count == updates_before:
                self.rng = DropoutStream.from_state(rng_before)
            else:
                self.interrupted_update = True
            raise
        except TrainingDiverged as error:
            raise TrainingDiverged(
                f"{error} (epoch {self.epoch}, batch {self.batch_index}): training stopped before updating the "
                f"weights; {self._last_good()}. Try a smaller lr_factor or a longer warmup."
            ) from None
        return result

    def train(self):
        """Train until the budget is spent; returns why it stopped ("epochs", "minutes",
        "max_steps" or "interrupted"). Raises TrainingDiverged on a non-finite loss, and
        RunWriteError when a file cannot be written; the run directory is released then."""
        try:
            reason = self._train()
        except OSError as error:
            message = f"{describe_write_error(error)}; {self._last_good()}"
            self._abandon()
            raise RunWriteError(message) from None
        except BaseException:
            self._abandon()
            raise
        self._abandon()  # the lock (finish() takes it again); a fresh run that saved nothing: its partial too
        return reason

    def _train(self):
        config, model = self.config, self.model
        started = time.monotonic()
        elapsed = self.elapsed_before
        estimate = config.max_steps or (config.epochs * self.batcher.batches_per_epoch(0) if config.epochs else None)
        self.interrupted_update = False
        self.say(
            f"Training {model.num_parameters():,} parameters on {self.n_train_pairs:,} pairs "
            f"({self.batcher.batches_per_epoch(self.epoch)} batches an epoch) with the {self.backend.name} backend"
        )
        # disable=None: a bar on a terminal only; elsewhere (a log file, CI) a plain line now and then
        bar = tqdm(total=estimate, initial=self.step, unit="step", disable=None if self.progress else True,
                   dynamic_ncols=True, file=sys.stderr, mininterval=0.5)
        print_every = 0 if not self.progress or not bar.disable else 10 * config.log_every
        with bar, self._graceful_interrupt():
            try:
                while True:
                    elapsed = self.elapsed_before + time.monotonic() - started
                    reason = self._stop_reason(elapsed)

                    # eval/checkpoint: on schedule, and once more when stopping (except on Ctrl-C: be quick)
                    due_eval = self.step > 0 and self.step % config.eval_every == 0
                    if self.evaluated_at != self.step and (due_eval or reason in ("epochs", "minutes", "max_steps")):
                        self._evaluate_during_training(elapsed)
                    due_save = self.step > 0 and self.step % config.checkpoint_every == 0
                    if self.saved_at != self.step and (due_save or reason):
                        self.save(elapsed)
                    if reason:
                        break

                    # step: one update by the recipe (step.py); the data position moves on with it
                    batch_start = time.monotonic()
                    batch = self.batcher.make_batch(self.batcher.epoch_batches(self.epoch)[self.batch_index])
                    loss, _, lr = self._step(batch)

                    # log: running loss, learning rate, tokens/s (non-pad source + target)
                    seconds = time.monotonic() - batch_start
                    tokens = batch.n_src_tokens + batch.n_tgt_tokens
                    self.step_seconds += seconds
                    self.tokens_trained += tokens
                    self.step_losses.append(loss)
                    self.window.add(loss, tokens, seconds)
                    bar.update(1)
                    if self.step % config.log_every == 0:
                        self._log(self.window, lr, bar, print_every)
                        self.window = LogWindow()
            except KeyboardInterrupt:
                # a Ctrl-C that could not wait for the end of the step (the second one)
                elapsed = self.elapsed_before + time.monotonic() - started
                if self.interrupted_update:
                    self.say(f"Interrupted in the middle of a weight update: not saved; {self._last_good()}.")
                    return "interrupted"
                self.save(elapsed)
                reason = "interrupted"
        self.elapsed = elapsed
        if reason == "interrupted":
            self.say(
                f"{SIGNAL_NAMES.get(self.stop_signal, 'Interrupted')}: stopped at step {self.step}; saved "
                f"{checkpoint_dir(self.run_dir) / 'last.npz'}. Resume with: minitransformer train --resume --out {self.run_dir}"
            )
        else:
            self.say(f"Stopped at step {self.step} ({reason} budget reached) after {elapsed / 60:.1f} min")
        return reason

    def _log(self, window, lr, bar, print_every):
        """One history entry, the progress bar's numbers, and a plain line where there is no bar."""
        loss, tokens_per_second = window.mean_loss, window.tokens_per_second
        self.history["train"].append(
            {"step": self.step, "loss": loss, "lr": lr, "tokens_per_second": round(tokens_per_second, 1)}
        )
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_second:,.0f}", epoch=self.epoch,
                        refresh=False)
        if print_every and self.step % print_every == 0:
            self.say(f"step {self.step}: loss {loss:.3f}, lr {lr:.2e}, {tokens_per_second:,.0f} tokens/s, "
                     f"epoch {self.epoch}")

    @contextlib.contextmanager
    def _graceful_interrupt(self):
        """The first Ctrl-C (SIGINT) or SIGTERM (what a job scheduler sends before it kills)
        asks the loop to stop after the current step, so the checkpoint is of a whole step;
        a second one interrupts at once, except while a checkpoint is being committed."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            name = SIGNAL_NAMES[signum]
            if self.stop_requested and not self.saving:
                raise KeyboardInterrupt
            if not self.stop_requested:
                self.stop_requested, self.stop_signal = True, signum
                self.say(f"{name}: stopping after this step and saving a checkpoint ({name} again to stop at once)")

        previous = {signum: signal.signal(signum, handler) for signum in SIGNAL_NAMES}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    # --- the end: final weights, full evaluation, metrics ---------------------------------------

    def finish(self):
        """Choose the final weights, evaluate on the full valid and test sets, write
        metrics.json and curves.png; returns the metrics."""
        config = self.config
        if self.lock is None:
            self.lock = RunLock.acquire(self.run_dir)
        last_params = {key: value.copy() for key, value in self.model.params.items()}
        ring = step_checkpoints(self.run_dir, up_to=self.step)[-config.keep_checkpoints:] if config.keep_checkpoints else []
        final = {"final_weights": "last"}
        if config.average_checkpoints and len(ring) >= 2:
            # average the ring only if it translates the valid subset better than the last weights
            bleu_last = self.evaluate(self.valid_subset)["bleu"]
            averaged = average_checkpoints(ring)
            for key, value in averaged.items():
                self.model.params[key][...] = self.model.xp.asarray(value)
            bleu_averaged = self.evaluate(self.valid_subset)["bleu"]
            final.update(valid_subset_bleu_last=bleu_last, valid_subset_bleu_averaged=bleu_averaged)
            if bleu_averaged > bleu_last:
                final["final_weights"] = f"average of the last {len(ring)} checkpoints (steps {', '.join(p.name[5:].lstrip('0') for p in ring)})"
            else:
                for key, value in last_params.items():
                    self.model.params[key][...] = value
        self.say(f"Final weights: {final['final_weights']}")
        elapsed = getattr(self, "elapsed", self.elapsed_before)
        try:
            save_checkpoint(self.run_dir, self.model, None,
                            dict(self._state(elapsed), final_weights=final["final_weights"]), name="final")
            metrics = self._final_evaluation(final, elapsed)
        except OSError as error:
            raise RunWriteError(
                f"{describe_write_error(error)}; {self._last_good()}; `--resume` evaluates it again"
            ) from None
        finally:
            self.close()
        return metrics

    def _final_evaluation(self, final, elapsed):
        config = self.config

        self.say(f"Evaluating on the full valid set ({len(self.valid.sources)} sources):")
        valid = self.evaluate(self.valid, samples=config.samples)
        final.update(valid_loss=valid["loss"], valid_bleu=valid["bleu"])
        for name, eval_set in self.test_sets.items():
            self.say(f"Evaluating on {name} ({len(eval_set.sources)} sources):")
            result = self.evaluate(eval_set, samples=config.samples)
            final[f"{name}_bleu"] = result["bleu"]
            final[f"{name}_loss"] = result["loss"]
        metrics = self._metrics(elapsed, final)
        write_json(self.run_dir / "metrics.json", metrics)
        self._plot()
        summary = ", ".join(
            f"{key} {metrics[key]:.2f}" for key in ("valid_loss", "valid_bleu", "test_bleu", "test_compositional_bleu")
            if metrics.get(key) is not None
        )
        self.say(f"Done: {summary}; {metrics['steps']} steps in {elapsed / 60:.1f} min, "
                 f"{metrics['tokens_per_second'] or 0:,.0f} tokens/s ({self.backend.name})")
        self.say(f"Run directory: {self.run_dir}/ (metrics.json, curves.png, checkpoints/final)")
        return metrics


# --- the command line: `minitransformer train` ---------------------------------------------------


def add_arguments(parser):
    parser.add_argument("--config", help="toy (default), tatoeba, or a .json file of TrainConfig fields")
    parser.add_argument("--data", help="train on this English<TAB>French file (valid/test are held out of it)")
    parser.add_argument("--out", help="the run directory (default: runs/<config name>/)")
    parser.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in the run directory (once the new one has a checkpoint)")
    parser.add_argument("--seed", type=int, help="seed for initialization, dropout and batch order")
    parser.add_argument("--model", choices=ARCHITECTURES,
                        help="transformer (default), or the recurrent rnnenc / rnnsearch (minitransformer/rnn/)")
    parser.add_argument("--epochs", type=int, help="stop after this many epochs in all")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes of training in all")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


DATA_FIELDS = ("train_data", "valid_data", "test_data", "compositional_test_data")


def _same_setting(name, asked, saved):
    if name in DATA_FIELDS and asked is not None and saved is not None:
        return resolve_data_path(asked).resolve() == resolve_data_path(saved).resolve()
    return asked == saved


def config_from_args(args):
    """-> (TrainConfig, run directory), from a named config and the command-line overrides.

    With --resume the run's own config.json is the config; what the command line asks
    (--config, --data, --seed) must agree with it, field by field, except the budget."""
    config = get_config(args.config or "toy")
    if args.data:
        config = replace(config, name=f"{config.name}-{Path(args.data).stem}", train_data=args.data,
                         valid_data=None, test_data=None, compositional_test_data=None)
    if getattr(args, "model", None) and args.model != config.architecture:
        config = replace(config, architecture=args.model, name=f"{config.name}-{args.model}")
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    run_dir = Path(args.out) if args.out else Path("runs") / config.name
    if args.resume:
        if args.overwrite:
            raise ConfigError("--resume continues the run and --overwrite replaces it: give one of them")
        config_path = run_dir / "config.json"
        if not config_path.is_file() and has_checkpoint(partial_path(run_dir)):
            # a kill fell in the middle of the swap of a fresh run: the Trainer completes it,
            # under the lock; its config is the partial one's
            config_path = partial_path(run_dir) / "config.json"
        if not config_path.is_file():
            raise CheckpointError(
                f"{run_dir}: nothing to resume: no checkpoint was written yet (no config.json); "
                f"start the run without --resume: minitransformer train --out {run_dir}"
            )
        try:
            saved = TrainConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8"))["train"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{config_path}: unreadable ({error})") from None
        if args.config is not None:
            compared, asked_by = [f for f in saved.to_dict() if f not in BUDGET_FIELDS and f != "name"], f"--config {args.config}"
        else:
            compared = (["train_data"] if args.data else []) + (["seed"] if args.seed is not None else [])
            asked_by = " and ".join(flag for flag, given in (("--data", args.data), ("--seed", args.seed is not None)) if given)
        different = [name for name in compared if not _same_setting(name, getattr(config, name), getattr(saved, name))]
        if different:
            shown = ", ".join(f"{name} {getattr(config, name)!r} (the run has {getattr(saved, name)!r})"
                              for name in different[:4]) + (", …" if len(different) > 4 else "")
            raise ConfigError(
                f"{asked_by} differs from the run's {config_path}: {shown}; a resumed run keeps its settings, "
                "only epochs, minutes and max_steps may change (or start a new run with another --out)"
            )
        budget = {name: getattr(config, name) for name in BUDGET_FIELDS} if args.config is not None else {}
        config = replace(saved, **budget)
    overrides = {name: getattr(args, name) for name in BUDGET_FIELDS if getattr(args, name) is not None}
    return replace(config, **overrides), run_dir


def run(args, trainer_class=Trainer):
    """`minitransformer train`: train, then evaluate; returns the exit code: 0 when done,
    130 after Ctrl-C, 143 after SIGTERM (both saved a checkpoint first). ``trainer_class``:
    Trainer, or under mpiexec parallel/trainer.py's DataParallelTrainer (cli.py chooses)."""
    config, run_dir = config_from_args(args)
    trainer = trainer_class(config, run_dir, backend=args.backend, resume=args.resume, progress=not args.no_progress,
                            overwrite=getattr(args, "overwrite", False))
    reason = trainer.train()
    if reason == "interrupted":
        return EXIT_CODES.get(trainer.stop_signal, 130)
    trainer.finish()
    return 0
