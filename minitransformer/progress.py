"""What a training run reports as it goes: lines, a progress bar, the log, metrics.json, curves.png.

    progress = Progress(out=sys.stdout)        # Progress(show=False): lines only, no bar
    progress.say("Training …")                 # one line, without breaking the bar
    with progress.bar(total=1000, initial=0):
        progress.advance()                     # one step done
        entry = progress.log(step, epoch, window, lr)   # every log_every steps: a history entry
    metrics = run_metrics(trainer, elapsed)    # what metrics.json holds
    write_curves(trainer.history, "runs/toy", "toy: runs/toy")

The log window is the steps since the last history entry (their mean loss and tokens per
second); a checkpoint saves it, so that a run resumed in the middle of a window logs the
same mean over the same steps as one that never stopped.
"""

import contextlib
import sys

from tqdm import tqdm

from .checkpoint import atomic_write
from .messages import sanitize


class LogWindow:
    """The steps since the last log entry: their mean loss and their tokens per second."""

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


class Progress:
    """Lines for a person, and a progress bar on a terminal. ``out=None``: silent (the
    ranks of a data-parallel run other than 0)."""

    def __init__(self, show=True, out=sys.stdout, log_every=10):
        self.show, self.out, self.log_every = show, out, log_every
        self._bar, self.print_every = None, 0

    def say(self, message):
        """Print a line without breaking the progress bar; untrusted text is made inert."""
        if self.out is not None:
            tqdm.write(sanitize(message), file=self.out)

    @contextlib.contextmanager
    def bar(self, total, initial):
        # disable=None: a bar on a terminal only; elsewhere (a log file, CI) a plain line now and then
        bar = tqdm(total=total, initial=initial, unit="step", disable=None if self.show else True,
                   dynamic_ncols=True, file=sys.stderr, mininterval=0.5)
        self.print_every = 0 if not self.show or not bar.disable else 10 * self.log_every
        with bar:
            self._bar = bar
            try:
                yield bar
            finally:
                self._bar = None

    def advance(self):
        self._bar.update(1)

    def log(self, step, epoch, window, lr):
        """The history entry of ``window``; the bar's numbers, and a plain line where there is no bar."""
        loss, tokens_per_second = window.mean_loss, window.tokens_per_second
        self._bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_second:,.0f}", epoch=epoch,
                              refresh=False)
        if self.print_every and step % self.print_every == 0:
            self.say(f"step {step}: loss {loss:.3f}, lr {lr:.2e}, {tokens_per_second:,.0f} tokens/s, epoch {epoch}")
        return {"step": step, "loss": loss, "lr": lr, "tokens_per_second": round(tokens_per_second, 1)}


def run_metrics(trainer, elapsed, final=None):
    """metrics.json of a run (a Trainer, train.py): where it is, how fast, its last valid
    scores; with ``final`` (the end's choices and scores), a finished run's."""
    history = trainer.history
    last_valid = history["valid"][-1] if history["valid"] else {}
    metrics = {
        "config": trainer.config.name,
        "backend": trainer.backend.name,
        "steps": trainer.step,
        "epochs": round(trainer.epoch + trainer.batch_index / max(trainer.batcher.batches_per_epoch(trainer.epoch), 1),
                        3),
        "parameters": trainer.model.num_parameters(),
        "train_pairs": trainer.n_train_pairs,
        "train_seconds": round(elapsed, 1),
        "tokens_per_second": round(trainer.tokens_trained / trainer.step_seconds, 1) if trainer.step_seconds else None,
        "valid_loss": last_valid.get("loss"),
        "valid_bleu": last_valid.get("bleu"),
        "test_bleu": None,
        "finished": False,
    }
    if final:
        metrics.update(final, finished=True)
    metrics["history"] = history
    return metrics


def write_curves(history, directory, title):
    """``directory``/curves.png: drawn into memory, then committed like every other file
    of the run, so a full disk leaves the old one."""
    from .plot import plot_curves

    atomic_write(directory / "curves.png", lambda handle: plot_curves(history, handle, title=title))
