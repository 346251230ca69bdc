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

Where each part lives: the step, step.py; the config, configs.py; when to stop (the budget,
Ctrl-C), stopping.py; the progress bar, the log, metrics.json and curves.png, progress.py;
the loss, BLEU and the choice of the final weights, evaluate.py; the run directory,
rundir.py; the checkpoint files, checkpoint.py. This file holds the data and the loop.
"""


import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import backends
from .architectures import NAMES as ARCHITECTURES
from .architectures import make_model
from .batching import Batcher, encode_pairs
from .checkpoint import (
    CheckpointError,
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
from .evaluate import EvalSet, choose_final_weights, final_scores
from .evaluate import evaluate as evaluate_set
from .layers.dropout import DropoutStream
from .optim import Adam
from .parallel.world import world_size_note
from .progress import LogWindow, Progress, run_metrics, write_curves
from .rundir import (  # noqa: F401  (RunWriteError: raised from here)
    RunDirectory,
    RunWriteError,
    has_checkpoint,
    nothing_to_resume,
    partial_path,
    saved_config,
)
from .step import (  # noqa: F401  (TrainingDiverged: raised from here)
    Recipe,
    TrainingDiverged,
    train_step,
    whole_batch_loss_and_grads,
)
from .stopping import BUDGET_REASONS, EXIT_CODES, SIGNAL_NAMES, Stopping
from .tokenizer import Tokenizer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = Path(__file__).resolve().parent / "corpus" / "data"


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


# --- 1. the data --------------------------------------------------------------------------------


def load_data(config, say):
    """Read and check every data file -> (train, valid, test sets) pairs; DataError on problems."""
    given = [path for path in (config.train_data, config.valid_data, config.test_data,
                               config.compositional_test_data) if path is not None]
    if any(PACKAGE_DATA in resolve_data_path(path).parents for path in given):
        say(f"Reading the toy corpus shipped with the package, in {PACKAGE_DATA}/")
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


def tokenizer_for(config, work_dir, train_pairs, resume, say):
    """The run's tokenizer: trained on the training split into ``work_dir``/tokenizer, or the saved one."""
    tokenizer_dir = Path(work_dir) / "tokenizer"
    if resume:
        return Tokenizer.load(tokenizer_dir)
    say(f"Training a {config.tokenizer_model_type.upper()} vocabulary of {config.vocab_size} pieces")
    return Tokenizer.train([source for source, _ in train_pairs], [target for _, target in train_pairs],
                           tokenizer_dir, vocab_size=config.vocab_size, shared=config.shared_vocab,
                           seed=config.seed, model_type=config.tokenizer_model_type)


class RunData(NamedTuple):
    tokenizer: Tokenizer
    batcher: Batcher  # the training pairs that fit, in batches of similar length
    valid: EvalSet
    valid_subset: EvalSet  # the eval_sentences first valid sources, for evaluations during training
    test_sets: dict  # name -> EvalSet
    n_train_pairs: int


def prepare_data(config, pairs, tokenizer):
    """The pairs encoded by ``tokenizer``, those that fit the model: -> RunData."""
    train_pairs, valid_pairs, test_sets = pairs
    max_len = config.model.max_len
    examples, _ = encode_pairs(train_pairs, tokenizer, max_len, name=str(config.train_data))
    if not examples:
        raise DataError(f"{config.train_data}: none of its {len(train_pairs)} training pairs fits within "
                        f"max_len={max_len} pieces; raise max_len in the config")
    batcher = Batcher(examples, config.max_tokens, seed=config.seed, pad_id=tokenizer.pad_id,
                      bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    valid = EvalSet.from_pairs("valid", valid_pairs, tokenizer, max_len)
    if not valid.sources:
        raise DataError(f"{config.valid_data or config.train_data}: none of its {len(valid_pairs)} validation "
                        f"pairs fits within max_len={max_len} pieces; raise max_len in the config")
    tests = {name: EvalSet.from_pairs(name, part, tokenizer, max_len) for name, part in test_sets.items() if part}
    return RunData(tokenizer, batcher, valid, valid.subset(config.eval_sentences, tokenizer), tests, len(examples))


# --- 2. the model, new or from the last checkpoint ----------------------------------------------


def new_optimizer(config, model):
    return Adam(model.params, config.beta1, config.beta2, config.eps, config.weight_decay)


def resumed_model(run_dir, tokenizer, model_config, config, backend, say):
    """The model and Adam of the last checkpoint, checked against the run: -> (model, optimizer, state)."""
    checkpoint = load_resumable(run_dir, say)
    saved = model_config_of(checkpoint)
    # a replaced tokenizer/ is named as such, not blamed on the config
    check_tokenizer_matches(tokenizer, saved, Path(run_dir) / "tokenizer", checkpoint["path"])
    if saved != model_config:
        raise CheckpointError(f"{checkpoint['path']}: its model config differs from the run's config.json")
    try:
        model = make_model(model_config, backend=backend, params=checkpoint["params"])
    except ValueError as error:
        raise CheckpointError(f"{checkpoint['path']}: {error}") from None
    if checkpoint["optimizer"] is None:
        raise CheckpointError(f"{checkpoint['path']}: holds no optimizer state; cannot resume from it")
    optimizer = new_optimizer(config, model)
    try:
        optimizer.load_state_dict(checkpoint["optimizer"], checkpoint["state"]["optimizer_step_count"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint['path']}: cannot resume from it ({type(error).__name__}: {error})") from None
    return model, optimizer, dict(checkpoint["state"], path=str(checkpoint["path"]))


def dropout_stream(seed):
    """The dropout stream of a run: counter-based (layers/dropout.py), keyed by a child of the
    seed, independent of the initialization's; the same masks on every backend."""
    return DropoutStream(int(np.random.SeedSequence(seed).spawn(1)[0].generate_state(1, np.uint64)[0]))


def restored_stream(saved, fresh, step, say):
    """The stream from a checkpoint's state; a checkpoint from before the counter-based
    stream (a NumPy bit-generator state) resumes with a fresh stream, and says so."""
    if "bit_generator" not in saved:
        return DropoutStream.from_state(saved)
    say("note: this checkpoint predates the counter-based dropout stream; training "
        "resumes with new dropout masks, so it will not repeat the uninterrupted run exactly")
    return DropoutStream(fresh.seed, calls=step)


# --- 3. the trainer -----------------------------------------------------------------------------


class Trainer:
    """One training run in one run directory. See the module docstring for the recipe."""

    # the step's forward-backward, which train_step calls: the loss, the gradients in
    # model.grads, on the whole batch (parallel/trainer.py shares it out over the ranks)
    _loss_and_grads = staticmethod(whole_batch_loss_and_grads)
    world_size = 1  # the processes training together (parallel/trainer.py: the MPI world's)

    def __init__(self, config: TrainConfig, run_dir, backend=None, resume=False, progress=True, out=None,
                 overwrite=False):
        self.config, self.run_dir = config, Path(run_dir)
        self.backend = backends.get(backend) if backend is None or isinstance(backend, str) else backend
        self.progress = Progress(progress, out if out is not None else sys.stdout, config.log_every)
        self.say = self.progress.say  # a line that does not break the progress bar
        self.stopping = Stopping(config)  # the budget, and the first Ctrl-C or SIGTERM
        self.step_losses = []  # every step's loss in this process (the resume test compares them)
        # 1. validate everything that can be checked without touching the run directory:
        #    the config (checked when it was built), the data files, the pairs that fit
        pairs = load_data(config, self.say)
        # 2. one writer: the lock; then finish whatever a kill interrupted
        self.rundir = RunDirectory.open(self.run_dir, config, resume, overwrite, self.say)
        # 3. the tokenizer (trained into the work directory, never into an existing run), the model
        with self.rundir.guarded():
            tokenizer = tokenizer_for(config, self.rundir.work, pairs[0], resume, self.say)
            (self.tokenizer, self.batcher, self.valid, self.valid_subset, self.test_sets,
             self.n_train_pairs) = prepare_data(config, pairs, tokenizer)
            self._start(resume)

    def _start(self, resume):
        """The model, Adam and the training state: new, or as the last checkpoint left them."""
        config = self.config
        model_config = config.model.with_vocabulary(self.tokenizer)
        self.recipe = Recipe.of(config)  # the numbers of section 5 that each step uses
        self.rng = dropout_stream(config.seed)
        self.step, self.epoch, self.batch_index = 0, 0, 0
        self.elapsed_before = 0.0  # seconds trained by earlier processes of this run
        self.step_seconds = 0.0  # seconds inside training steps (for tokens/s)
        self.tokens_trained = 0  # non-pad source + target tokens trained on
        self.history = {"train": [], "valid": []}
        self.window = LogWindow()  # the steps since the last history entry
        self.resumed_state = None  # the state of the checkpoint resumed from
        if not resume:
            self.model = make_model(model_config, seed=config.seed, backend=self.backend)
            self.optimizer = new_optimizer(config, self.model)
            write_json(self.rundir.work / "config.json", {"train": config.to_dict(), "model": model_config.to_dict()})
        else:
            self.model, self.optimizer, state = resumed_model(self.run_dir, self.tokenizer, model_config, config,
                                                              self.backend, self.say)
            try:
                self.step = state["step"]
                self.epoch, self.batch_index = state["data_position"]["epoch"], state["data_position"]["batch"]
                self.rng = restored_stream(state["rng"]["dropout"], self.rng, self.step, self.say)
                self.elapsed_before, self.step_seconds = state["train_seconds"], state["step_seconds"]
                self.tokens_trained, self.history = state["tokens_trained"], state["history"]
                self.window = LogWindow.from_state(state["log_window"])
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(f"{state['path']}: cannot resume from it ({type(error).__name__}: {error})") from None
            self.rundir.saved_at, self.resumed_state = self.step, state
            self.say(f"Resuming {self.run_dir} at step {self.step} (epoch {self.epoch}, batch {self.batch_index})")
            note = world_size_note(state.get("world_size", 1), self.world_size)
            if note:
                self.say(note)
        self.elapsed = self.elapsed_before
        self.evaluated_at = self.history["valid"][-1]["step"] if self.history["valid"] else None

    # --- the loop -----------------------------------------------------------------------------

    def train(self):
        """Train until the budget is spent; returns why it stopped ("epochs", "minutes",
        "max_steps" or "interrupted"). Raises TrainingDiverged on a non-finite loss, and
        RunWriteError when a file cannot be written. The run directory is released at the
        end, whatever happens (finish() takes it again)."""
        config, batcher = self.config, self.batcher
        estimate = config.max_steps or (config.epochs * batcher.batches_per_epoch(0) if config.epochs else None)
        self.interrupted_update = False  # a Ctrl-C fell in the middle of a weight update
        self.say(f"Training {self.model.num_parameters():,} parameters on {self.n_train_pairs:,} pairs "
                 f"({batcher.batches_per_epoch(self.epoch)} batches an epoch) with the {self.backend.name} backend")
        started = time.monotonic()
        with self.rundir.guarded(release=True), self.progress.bar(estimate, self.step), \
                self.stopping.on_signals(self.say):
            try:
                reason = self._loop(started)
            except KeyboardInterrupt:
                # a Ctrl-C that could not wait for the end of the step (the second one)
                self.elapsed = self.elapsed_before + time.monotonic() - started
                if self.interrupted_update:
                    self.say(f"Interrupted in the middle of a weight update: not saved; {self.rundir.last_good()}.")
                    return "interrupted"
                self.save(self.elapsed)
                reason = "interrupted"
        if reason == "interrupted":
            self.say(
                f"{SIGNAL_NAMES.get(self.stopping.signal, 'Interrupted')}: stopped at step {self.step}; saved "
                f"{checkpoint_dir(self.run_dir) / 'last.npz'}. Resume with: minitransformer train --resume --out {self.run_dir}"
            )
        else:
            self.say(f"Stopped at step {self.step} ({reason} budget reached) after {self.elapsed / 60:.1f} min")
        return reason

    def _loop(self, started):
        """The recipe's loop, stage by stage, until a budget or a signal stops it; -> why it stopped."""
        config = self.config
        while True:
            self.elapsed = self.elapsed_before + time.monotonic() - started
            reason = self.stopping.reason(self.step, self.epoch, self.elapsed)

            # evaluate: on schedule, and once more when a budget stops the run (not on Ctrl-C: be quick)
            due_eval = self.step > 0 and self.step % config.eval_every == 0
            if self.evaluated_at != self.step and (due_eval or reason in BUDGET_REASONS):
                self._evaluate_during_training(self.elapsed)
            # checkpoint: on schedule, and whenever the run stops
            due_save = self.step > 0 and self.step % config.checkpoint_every == 0
            if self.rundir.saved_at != self.step and (due_save or reason):
                self.save(self.elapsed)
            if reason:
                return reason

            # batches: the next of this epoch's order (a pure function of the seed and the position)
            batch_start = time.monotonic()
            batch = self.batcher.make_batch(self.batcher.epoch_batches(self.epoch)[self.batch_index])

            # step: one update by the recipe (step.py); the data position moves on with it
            result = self._step(batch)

            # log: running loss, learning rate, tokens/s (non-pad source + target)
            seconds, tokens = time.monotonic() - batch_start, batch.n_src_tokens + batch.n_tgt_tokens
            self.step_seconds += seconds
            self.tokens_trained += tokens
            self.step_losses.append(result.loss)
            self.window.add(result.loss, tokens, seconds)
            self.progress.advance()
            if self.step % config.log_every == 0:
                self.history["train"].append(self.progress.log(self.step, self.epoch, self.window, result.lr))
                self.window = LogWindow()

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
                f"weights; {self.rundir.last_good()}. Try a smaller lr_factor or a longer warmup."
            ) from None
        return result

    # --- checkpoints and evaluation -----------------------------------------------------------

    def _state(self, elapsed):
        """What a checkpoint saves beside the weights and Adam: all a resumed run needs."""
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
            "metrics": {key: value for key, value in run_metrics(self, elapsed).items() if key != "history"},
            "backend": self.backend.name,
        }

    def save(self, elapsed):
        """On schedule, one more entry in the averaging ring; then checkpoints/last, to resume
        from. The ring comes first and only on schedule, so a Ctrl-C adds no entry and a kill
        between the two leaves an entry that the resumed run rewrites, identically."""
        state = self._state(elapsed)
        self.stopping.saving = True
        try:
            if self.step > 0 and self.step % self.config.checkpoint_every == 0:
                save_step_checkpoint(self.rundir.work, self.model, state, keep=self.config.keep_checkpoints)
            save_checkpoint(self.rundir.work, self.model, self.optimizer, state, name="last")
            self.rundir.saved(self.step)  # a fresh run's first checkpoint: now it takes the run's place
        finally:
            self.stopping.saving = False

    def evaluate(self, eval_set, samples=0):
        """-> {"loss", "bleu"} on ``eval_set``, saying ``samples`` translations (evaluate.py)."""
        return evaluate_set(self.model, self.tokenizer, eval_set, self.config.max_tokens, samples, self.say)

    def _evaluate_during_training(self, elapsed):
        result = self.evaluate(self.valid_subset, samples=self.config.samples)
        self.history["valid"].append({"step": self.step, "loss": result["loss"], "bleu": result["bleu"]})
        self.evaluated_at = self.step
        self.say(
            f"step {self.step}: valid loss {result['loss']:.3f}, valid BLEU {result['bleu']:.1f} "
            f"({len(self.valid_subset.sources)} sources, greedy), {elapsed / 60:.1f} min"
        )
        write_json(self.rundir.work / "metrics.json", run_metrics(self, elapsed))
        write_curves(self.history, self.rundir.work, f"{self.config.name}: {self.run_dir}")

    # --- the end: final weights, full evaluation, metrics ---------------------------------------

    def finish(self):
        """Choose the final weights, evaluate on the full valid and test sets, write
        metrics.json and curves.png; returns the metrics."""
        config = self.config
        self.rundir.reacquire()
        with self.rundir.guarded(release=True, then="; `--resume` evaluates it again"):
            ring = step_checkpoints(self.run_dir, up_to=self.step)[-config.keep_checkpoints:] if config.keep_checkpoints else []
            final = {"final_weights": "last"}
            if config.average_checkpoints and len(ring) >= 2:
                # the ring's average only if it translates the valid subset better than the last weights
                final = choose_final_weights(self.model, ring, lambda: self.evaluate(self.valid_subset)["bleu"])
            self.say(f"Final weights: {final['final_weights']}")
            save_checkpoint(self.run_dir, self.model, None,
                            dict(self._state(self.elapsed), final_weights=final["final_weights"]), name="final")
            final.update(final_scores(self.evaluate, self.valid, self.test_sets, config.samples, self.say))
            metrics = run_metrics(self, self.elapsed, final)
            write_json(self.run_dir / "metrics.json", metrics)
            write_curves(self.history, self.run_dir, f"{config.name}: {self.run_dir}")
        summary = ", ".join(
            f"{key} {metrics[key]:.2f}" for key in ("valid_loss", "valid_bleu", "test_bleu", "test_compositional_bleu")
            if metrics.get(key) is not None
        )
        self.say(f"Done: {summary}; {metrics['steps']} steps in {self.elapsed / 60:.1f} min, "
                 f"{metrics['tokens_per_second'] or 0:,.0f} tokens/s ({self.backend.name})")
        self.say(f"Run directory: {self.run_dir}/ (metrics.json, curves.png, checkpoints/final)")
        return metrics

    def close(self):
        """Release the run directory's lock (train() and finish() do, and the kernel at exit)."""
        self.rundir.release()


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
        config = replace(config.with_architecture(args.model), name=f"{config.name}-{args.model}")
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    run_dir = Path(args.out) if args.out else Path("runs") / config.name
    if args.resume:
        if args.overwrite:
            raise ConfigError("--resume continues the run and --overwrite replaces it: give one of them")
        config = _resumed_config(args, config, run_dir)
    overrides = {name: getattr(args, name) for name in BUDGET_FIELDS if getattr(args, name) is not None}
    return replace(config, **overrides), run_dir


def _resumed_config(args, config, run_dir):
    """The run's saved config, with the budget of --config if given; what the command line
    asks must agree with it."""
    config_path = run_dir / "config.json"
    if not config_path.is_file() and has_checkpoint(partial_path(run_dir)):
        # a kill fell in the middle of the swap of a fresh run: the Trainer completes it,
        # under the lock; its config is the partial one's
        config_path = partial_path(run_dir) / "config.json"
    if not config_path.is_file():
        raise nothing_to_resume(run_dir)
    saved = saved_config(config_path)
    asked, had = config.settings(), saved.settings()
    if args.config is not None:
        compared, asked_by = [f for f in had if f not in BUDGET_FIELDS and f != "name"], f"--config {args.config}"
    else:
        compared = (["train_data"] if args.data else []) + (["seed"] if args.seed is not None else [])
        asked_by = " and ".join(flag for flag, given in (("--data", args.data), ("--seed", args.seed is not None)) if given)
    different = [name for name in compared if not _same_setting(name, asked.get(name), had[name])]
    if different:
        shown = ", ".join(f"{name} {asked.get(name)!r} (the run has {had[name]!r})"
                          for name in different[:4]) + (", …" if len(different) > 4 else "")
        raise ConfigError(
            f"{asked_by} differs from the run's {config_path}: {shown}; a resumed run keeps its settings, "
            "only epochs, minutes and max_steps may change (or start a new run with another --out)"
        )
    budget = {name: getattr(config, name) for name in BUDGET_FIELDS} if args.config is not None else {}
    return replace(saved, **budget)


def run(args, trainer_class=Trainer):
    """`minitransformer train`: train, then evaluate; returns the exit code: 0 when done,
    130 after Ctrl-C, 143 after SIGTERM (both saved a checkpoint first). ``trainer_class``:
    Trainer, or under mpiexec parallel/trainer.py's DataParallelTrainer (cli.py chooses)."""
    config, run_dir = config_from_args(args)
    trainer = trainer_class(config, run_dir, backend=args.backend, resume=args.resume, progress=not args.no_progress,
                            overwrite=getattr(args, "overwrite", False))
    reason = trainer.train()
    if reason == "interrupted":
        return EXIT_CODES.get(trainer.stopping.signal, 130)
    trainer.finish()
    return 0
