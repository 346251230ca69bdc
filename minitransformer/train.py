"""Training: the recipe of "Attention Is All You Need" (section 5), on one machine.

    minitransformer train                               # the toy config, into runs/toy/
    minitransformer train --config tatoeba              # real Tatoeba pairs, 10 minutes: runs/tatoeba/
    minitransformer train --data pairs.tsv --minutes 5  # any English<TAB>French file: runs/toy-pairs/
    minitransformer train --resume                      # continue runs/toy/ exactly where it stopped
    minitransformer train --backend numpy --seed 1 --out runs/seed1

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
(last, final, step-*), metrics.json (written at every evaluation, so a stopped run still
has one) and curves.png. Ctrl-C stops after the current step and saves a checkpoint;
`--resume` continues with the same weights, optimizer state, data position and random
stream, so the resumed run computes the very same losses as one that never stopped.
"""

import contextlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import sacrebleu
from tqdm import tqdm

from . import backends
from .batching import Batcher, encode_pairs, pad_sequences
from .checkpoint import (
    CheckpointError,
    average_checkpoints,
    checkpoint_dir,
    load_checkpoint,
    model_config_of,
    save_checkpoint,
    save_step_checkpoint,
    step_checkpoints,
    write_json,
)
from .configs import BUDGET_FIELDS, ConfigError, TrainConfig, get_config
from .data import group_references, load_pairs, split_by_source
from .layers.dropout import DropoutStream
from .model import make_model
from .optim import Adam, clip_grad_norm, noam_lr
from .tokenizer import Tokenizer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# sentences decoded together when measuring BLEU
DECODE_BATCH = 100


class TrainingDiverged(RuntimeError):
    """The loss or the gradient stopped being finite; nothing was saved after it."""


def resolve_data_path(path):
    """A relative data path is looked up in the working directory, then in the project root
    (so `make train` and a run from another directory find data/ and ../shared/data)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    beside_project = PROJECT_ROOT / path
    return beside_project if beside_project.exists() else path


# --- evaluation: loss and BLEU ----------------------------------------------------------------


@dataclass
class EvalSet:
    """A valid or test set: every pair for the loss, distinct sources with all their
    references for BLEU."""

    name: str
    examples: list  # (source ids, target ids) of every pair that fits the model
    sources: list  # distinct source sentences, in file order
    references: list  # references[i]: every translation of sources[i]

    @classmethod
    def from_pairs(cls, name, pairs, tokenizer, max_len):
        examples, kept = encode_pairs(pairs, tokenizer, max_len, name=name)
        sources, references = group_references(kept)
        return cls(name, examples, sources, references)

    def subset(self, n_sources, tokenizer):
        """The first ``n_sources`` sources, and only the pairs of those (for quick evaluations)."""
        if n_sources is None or n_sources >= len(self.sources):
            return self
        sources, references = self.sources[:n_sources], self.references[:n_sources]
        examples = [
            (tokenizer.encode_src(source), tokenizer.encode_tgt(target))
            for source, targets in zip(sources, references)
            for target in targets
        ]
        return EvalSet(self.name, examples, sources, references)


def corpus_bleu(hypotheses, references):
    """sacreBLEU's corpus BLEU, each hypothesis against all its references.

    sacreBLEU takes references as streams (stream j holds every sentence's j-th reference);
    a sentence with fewer references gets None in the later streams, which sacreBLEU skips.
    """
    n_streams = max(len(refs) for refs in references)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(n_streams)]
    # force: the toy corpus is already split at punctuation ("dort ."), which sacreBLEU would
    # warn about; its 13a tokenization leaves such text as it is, so the score is unaffected
    return float(sacrebleu.corpus_bleu(hypotheses, streams, force=True).score)


def translate_sentences(model, tokenizer, sentences, batch_size=DECODE_BATCH):
    """Greedy translations of ``sentences`` (strings), decoded in batches of similar length."""
    from .decode import greedy_decode

    encoded = [tokenizer.encode_src(sentence)[: model.config.max_len] or [tokenizer.unk_id] for sentence in sentences]
    by_length = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    translations = [None] * len(encoded)
    for start in range(0, len(by_length), batch_size):
        rows = by_length[start : start + batch_size]
        src = pad_sequences([encoded[i] for i in rows], tokenizer.pad_id)  # (B, S)
        # room for a translation somewhat longer than its source, within the positions
        max_new = min(model.config.max_len, 2 * src.shape[1] + 10)
        outputs = greedy_decode(model, src, tokenizer.bos_id, tokenizer.eos_id, max_new)
        for row, ids in zip(rows, outputs):
            translations[row] = tokenizer.decode_tgt(ids)
    return translations


def mean_loss(model, examples, pad_id, max_tokens):
    """The plain cross-entropy per target token over ``examples`` (no smoothing, no dropout)."""
    if not examples:
        return float("nan")
    batcher = Batcher(examples, max_tokens, seed=0, pad_id=pad_id)
    total, tokens = 0.0, 0
    xp = model.xp
    for _, batch in batcher.iterate(epoch=0):
        loss = model.loss(xp.asarray(batch.src), xp.asarray(batch.tgt_in), xp.asarray(batch.tgt_out))
        total += loss * batch.n_tgt_tokens  # the model's loss is a mean: weight it back by tokens
        tokens += batch.n_tgt_tokens
    return total / tokens


# --- the trainer ------------------------------------------------------------------------------


class LogWindow:
    """The steps since the last log entry: their mean loss and their tokens per second."""

    def __init__(self):
        self.loss, self.steps, self.tokens, self.seconds = 0.0, 0, 0, 0.0

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

    def __init__(self, config: TrainConfig, run_dir, backend=None, resume=False, progress=True, out=None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.backend = backends.get(backend) if backend is None or isinstance(backend, str) else backend
        self.progress = progress
        self.out = out if out is not None else sys.stdout
        self.stop_requested = False  # set by the first Ctrl-C
        self.step_losses = []  # every step's loss in this process (the resume test compares them)
        if resume:
            self._check_resumable()
        else:
            self._start_fresh_directory()
        self._prepare_data(resume)
        self._build(resume)

    def say(self, message):
        """Print a line without breaking the progress bar."""
        tqdm.write(message, file=self.out)

    # --- setup --------------------------------------------------------------------------------

    def _check_resumable(self):
        config_path = self.run_dir / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"{self.run_dir}: nothing to resume (no config.json); train without --resume")
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

    def _start_fresh_directory(self):
        """A fresh run replaces whatever an earlier run left in the same directory."""
        old = [self.run_dir / name for name in ("checkpoints", "tokenizer", "metrics.json", "curves.png", "config.json")]
        if any(path.exists() for path in old):
            self.say(f"Starting a fresh run in {self.run_dir}/ (replacing the run there; --resume would continue it)")
            for path in old:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _prepare_data(self, resume):
        config = self.config
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

        tokenizer_dir = self.run_dir / "tokenizer"
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
        self.batcher = Batcher(examples, config.max_tokens, seed=config.seed, pad_id=self.tokenizer.pad_id,
                               bos_id=self.tokenizer.bos_id, eos_id=self.tokenizer.eos_id)
        self.valid = EvalSet.from_pairs("valid", valid_pairs, self.tokenizer, config.max_len)
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
        if not resume:
            self.model = make_model(model_config, seed=config.seed, backend=self.backend)
            self.optimizer = Adam(self.model.params, config.beta1, config.beta2, config.eps, config.weight_decay)
            write_json(self.run_dir / "config.json", {"train": config.to_dict(), "model": model_config.to_dict()})
            self.saved_at = None  # the step of the last checkpoint, None before the first
        else:
            checkpoint = load_checkpoint(checkpoint_dir(self.run_dir) / "last")
            if model_config_of(checkpoint) != model_config:
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
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(f"{checkpoint['path']}: cannot resume from it ({type(error).__name__}: {error})") from None
            self.saved_at = self.step
            self.say(f"Resuming {self.run_dir} at step {self.step} (epoch {self.epoch}, batch {self.batch_index})")
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
            "metrics": {key: value for key, value in self._metrics(elapsed).items() if key != "history"},
            "backend": self.backend.name,
        }

    def save(self, elapsed):
        """checkpoints/last (to resume from) and one more entry in the averaging ring."""
        state = self._state(elapsed)
        save_checkpoint(self.run_dir, self.model, self.optimizer, state, name="last")
        save_step_checkpoint(self.run_dir, self.model, state, keep=self.config.keep_checkpoints)
        self.saved_at = self.step

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
        write_json(self.run_dir / "metrics.json", self._metrics(elapsed))
        self._plot()

    def _plot(self):
        from .plot import plot_curves

        plot_curves(self.history, self.run_dir / "curves.png", title=f"{self.config.name}: {self.run_dir}")

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

    def _last_good(self):
        if self.saved_at is None:
            return "no checkpoint had been saved yet"
        return f"the last good checkpoint, step {self.saved_at} in {checkpoint_dir(self.run_dir) / 'last.json'}, is untouched"

    def train(self):
        """Train until the budget is spent; returns why it stopped ("epochs", "minutes",
        "max_steps" or "interrupted"). Raises TrainingDiverged on a non-finite loss."""
        config, model, xp = self.config, self.model, self.model.xp
        started = time.monotonic()
        elapsed = self.elapsed_before
        estimate = config.max_steps or (config.epochs * self.batcher.batches_per_epoch(0) if config.epochs else None)
        window = LogWindow()
        self.updating = False
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

                    batch_start = time.monotonic()
                    batch = self.batcher.make_batch(self.batcher.epoch_batches(self.epoch)[self.batch_index])
                    src, tgt_in, tgt_out = xp.asarray(batch.src), xp.asarray(batch.tgt_in), xp.asarray(batch.tgt_out)
                    rng_before = self.rng.state()  # restored if this step is interrupted

                    # lr: linear warmup, then 1/√step decay
                    lr = noam_lr(self.step + 1, config.d_model, config.warmup_steps, config.lr_factor)

                    # forward-backward: dropout on, label-smoothed cross-entropy; grads in model.grads
                    try:
                        loss = model.loss_and_grads(src, tgt_in, tgt_out, config.label_smoothing, self.rng)
                    except KeyboardInterrupt:
                        self.rng = DropoutStream.from_state(rng_before)
                        raise
                    if not math.isfinite(loss):
                        raise TrainingDiverged(
                            f"the loss is {loss} at step {self.step + 1} (epoch {self.epoch}, batch {self.batch_index}): "
                            f"training stopped before updating the weights; {self._last_good()}. "
                            "Try a smaller lr_factor or a longer warmup."
                        )

                    # clip: the global gradient norm to clip_norm
                    grad_norm = clip_grad_norm(model.grads, config.clip_norm)
                    if not math.isfinite(grad_norm):
                        raise TrainingDiverged(
                            f"the gradient norm is {grad_norm} at step {self.step + 1} (loss {loss:.4f}): "
                            f"training stopped before updating the weights; {self._last_good()}."
                        )

                    # step: Adam; the data position moves on with it
                    self.updating = True
                    self.optimizer.step(model.params, model.grads, lr)
                    self.step += 1
                    self.batch_index += 1
                    if self.batch_index == self.batcher.batches_per_epoch(self.epoch):
                        self.epoch, self.batch_index = self.epoch + 1, 0
                    self.updating = False

                    # log: running loss, learning rate, tokens/s (non-pad source + target)
                    seconds = time.monotonic() - batch_start
                    tokens = batch.n_src_tokens + batch.n_tgt_tokens
                    self.step_seconds += seconds
                    self.tokens_trained += tokens
                    self.step_losses.append(loss)
                    window.add(loss, tokens, seconds)
                    bar.update(1)
                    if self.step % config.log_every == 0:
                        self._log(window, lr, bar, print_every)
                        window = LogWindow()
            except KeyboardInterrupt:
                # a Ctrl-C that could not wait for the end of the step (the second one)
                elapsed = self.elapsed_before + time.monotonic() - started
                if self.updating:
                    self.say(f"Interrupted in the middle of a weight update: not saved; {self._last_good()}.")
                    return "interrupted"
                self.save(elapsed)
                reason = "interrupted"
        self.elapsed = elapsed
        if reason == "interrupted":
            self.say(
                f"Interrupted at step {self.step}; saved {checkpoint_dir(self.run_dir) / 'last.json'}. "
                f"Resume with: minitransformer train --resume --out {self.run_dir}"
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
        """The first Ctrl-C asks the loop to stop after the current step (so the checkpoint
        is of a whole step); a second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            self.say("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # --- the end: final weights, full evaluation, metrics ---------------------------------------

    def finish(self):
        """Choose the final weights, evaluate on the full valid and test sets, write
        metrics.json and curves.png; returns the metrics."""
        config = self.config
        last_params = {key: value.copy() for key, value in self.model.params.items()}
        ring = step_checkpoints(self.run_dir)
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
        save_checkpoint(self.run_dir, self.model, None, dict(self._state(elapsed), final_weights=final["final_weights"]),
                        name="final")

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
    parser.add_argument("--config", default="toy", help="toy (default), tatoeba, or a .json file of TrainConfig fields")
    parser.add_argument("--data", help="train on this English<TAB>French file (valid/test are held out of it)")
    parser.add_argument("--out", help="the run directory (default: runs/<config name>/)")
    parser.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    parser.add_argument("--seed", type=int, help="seed for initialization, dropout and batch order")
    parser.add_argument("--epochs", type=int, help="stop after this many epochs in all")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes of training in all")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args):
    """-> (TrainConfig, run directory), from a named config and the command-line overrides."""
    config = get_config(args.config)
    if args.data:
        config = replace(config, name=f"{config.name}-{Path(args.data).stem}", train_data=args.data,
                         valid_data=None, test_data=None, compositional_test_data=None)
    run_dir = Path(args.out) if args.out else Path("runs") / config.name
    if args.resume:
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"{run_dir}: nothing to resume (no config.json)")
        try:
            config = TrainConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8"))["train"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{config_path}: unreadable ({error})") from None
        if args.data and resolve_data_path(args.data).resolve() != resolve_data_path(config.train_data).resolve():
            raise ConfigError(f"--data {args.data} differs from the run's data {config.train_data}; a resumed run keeps its data")
        if args.seed is not None and args.seed != config.seed:
            raise ConfigError(f"--seed {args.seed} differs from the run's seed {config.seed}; a resumed run keeps its seed")
    elif args.seed is not None:
        config = replace(config, seed=args.seed)
    overrides = {name: getattr(args, name) for name in BUDGET_FIELDS if getattr(args, name) is not None}
    return replace(config, **overrides), run_dir


def run(args):
    """`minitransformer train`: train, then evaluate; returns the exit code."""
    config, run_dir = config_from_args(args)
    trainer = Trainer(config, run_dir, backend=args.backend, resume=args.resume, progress=not args.no_progress)
    reason = trainer.train()
    if reason == "interrupted":
        return 130  # the shell's code for "stopped by Ctrl-C"
    trainer.finish()
    return 0
