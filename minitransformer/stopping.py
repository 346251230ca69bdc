"""When a training run stops: the first budget spent (epochs, minutes, steps), or a signal.

    stopping = Stopping(config)
    with stopping.on_signals(say):       # the first Ctrl-C or SIGTERM: stop after this step
        while not stopping.reason(step, epoch, elapsed):
            ...

The first Ctrl-C (SIGINT) or SIGTERM (what a job scheduler sends before it kills) asks the
loop to stop after the current step, so that its checkpoint is of a whole step; a second
one interrupts at once (KeyboardInterrupt), except while a checkpoint is being committed
(``saving``), which it waits for.
"""

import contextlib
import signal
import threading

# what SIGINT and SIGTERM stop a run with: the shell's codes, 128 + the signal's number
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
# the reasons a budget gives (a signal gives "interrupted")
BUDGET_REASONS = ("epochs", "minutes", "max_steps")


class Stopping:
    """The budgets of a TrainConfig, and the signals that ask the loop to stop."""

    def __init__(self, config):
        self.config = config
        self.requested = False  # set by the first Ctrl-C or SIGTERM
        self.signal = None  # which of the two stopped the run
        self.saving = False  # a second signal waits while a checkpoint is being committed

    def reason(self, step, epoch, elapsed):
        """Why to stop before the next step ("interrupted" or a budget's name), or None."""
        config = self.config
        if self.requested:
            return "interrupted"
        if config.max_steps is not None and step >= config.max_steps:
            return "max_steps"
        if config.epochs is not None and epoch >= config.epochs:
            return "epochs"
        if config.minutes is not None and elapsed >= config.minutes * 60.0:
            return "minutes"
        return None

    @contextlib.contextmanager
    def on_signals(self, say):
        """SIGINT and SIGTERM handled as the module docstring says, for the ``with`` block
        (in the main thread only: Python delivers signals there)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            name = SIGNAL_NAMES[signum]
            if self.requested and not self.saving:
                raise KeyboardInterrupt
            if not self.requested:
                self.requested, self.signal = True, signum
                say(f"{name}: stopping after this step and saving a checkpoint ({name} again to stop at once)")

        previous = {signum: signal.signal(signum, handler) for signum in SIGNAL_NAMES}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)
