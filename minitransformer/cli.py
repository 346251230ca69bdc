"""The command line: ``minitransformer train``, ``translate`` and ``inspect``.

    minitransformer train --config toy                     # see minitransformer/train.py
    minitransformer translate --checkpoint runs/toy "the black cat sleeps ."
    minitransformer inspect attribute "the black cat sleeps ."   # see minitransformer/interpret/cli.py
    python -m minitransformer train --backend numpy        # the same, without the entry point

Every subcommand takes ``--backend {numpy,cython,cupy,auto}``; its default is the
environment variable MINITRANSFORMER_BACKEND, else auto. Problems with what the user gave
(a backend that cannot run here, a bad data file, a bad checkpoint or config) end with ONE
line on stderr and a non-zero exit code, never a traceback: 2 for a backend or usage
error, 1 for bad input, a diverged run, a run directory in use or a file that cannot be
written (a full disk names the file and the last good checkpoint), 130 for Ctrl-C and 143
for SIGTERM (a training run saves a checkpoint first). Text that came from outside (a
file's lines, a path) is printed with its control characters escaped (messages.py).
"""

import argparse
import os
import signal
import sys
import warnings

from . import backends
from .memory import keep_freed_memory


def _add_backend_argument(parser):
    parser.add_argument(
        "--backend",
        choices=backends.NAMES,
        default=None,
        help=f"the attention core (default: ${backends.ENV_VAR}, else auto)",
    )


def build_parser():
    from . import train

    parser = argparse.ArgumentParser(
        prog="minitransformer", description="Train and use an encoder-decoder Transformer written in NumPy."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,translate,inspect}")

    train_parser = commands.add_parser("train", help="train a model (see minitransformer/train.py)")
    train.add_arguments(train_parser)
    _add_backend_argument(train_parser)
    train_parser.set_defaults(run=_run_train)

    # imported here, when the parser is built, not when this module is: `import
    # minitransformer.cli` stays light
    from .translate import add_arguments as add_translate_arguments
    from .translate import run as run_translate

    # "resolve": translate may declare its own --backend; the last declaration wins
    translate_parser = commands.add_parser(
        "translate", help="translate sentences with a trained run", conflict_handler="resolve"
    )
    _add_backend_argument(translate_parser)
    add_translate_arguments(translate_parser)
    translate_parser.set_defaults(run=run_translate)

    from .interpret.cli import add_arguments as add_inspect_arguments
    from .interpret.cli import run as run_inspect

    inspect_parser = commands.add_parser("inspect", help="explain a trained run: heads, clusters, alignments (chapter 11)")
    add_inspect_arguments(inspect_parser, _add_backend_argument)  # --backend on each of its subcommands
    inspect_parser.set_defaults(run=run_inspect)
    return parser


def _run_train(args):
    """`minitransformer train`, by the Trainer or, under mpiexec, its data-parallel form."""
    from . import train
    from .parallel.trainer import trainer_class

    return train.run(args, trainer_class())


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    """Warnings for a person at a terminal: the message, without the source line."""
    from .messages import sanitize

    print(f"warning: {sanitize(message)}", file=file if file is not None else sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (which handles it itself, saving first)."""


def _terminated(signum, frame):
    raise Terminated


def _error(prefix, error):
    from .messages import sanitize

    print(f"minitransformer: {prefix}{sanitize(error)}", file=sys.stderr)


def main(argv=None):
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = {}
    if threading_is_main():
        # a file-size limit (ulimit -f) makes write() fail with EFBIG instead of killing us,
        # so that the error can name the file; SIGTERM ends with a message, not silently
        previous = {signal.SIGXFSZ: signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
                    signal.SIGTERM: signal.signal(signal.SIGTERM, _terminated)}
    try:
        return _run(args)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(args):
    from .checkpoint import CheckpointError
    from .configs import ConfigError
    from .data import DataError
    from .rundir import RunDirectoryError
    from .tokenizer import TokenizerError
    from .train import RunWriteError, TrainingDiverged

    keep_freed_memory()  # every step reuses its temporaries without page faults (memory.py)
    if args.backend is None:  # resolved here, once, so that every subcommand sees the same choice
        args.backend = os.environ.get(backends.ENV_VAR) or "auto"
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings
        try:
            # fail fast, before any data is read, when the backend cannot run here
            backends.get(args.backend)
        except (backends.BackendUnavailable, ValueError) as error:  # ValueError: a bad $MINITRANSFORMER_BACKEND
            _error("error: ", error)
            return 2
        try:
            return int(args.run(args) or 0)
        except TrainingDiverged as error:
            _error("training diverged: ", error)
            return 1
        except (DataError, CheckpointError, ConfigError, TokenizerError, RunDirectoryError, RunWriteError) as error:
            _error("error: ", error)
            return 1
        except OSError as error:
            from .rundir import describe_write_error

            _error("error: ", describe_write_error(error) if error.filename else error)
            return 1
        except backends.BackendUnavailable as error:
            _error("error: ", error)
            return 2
        except Terminated:
            print("minitransformer: terminated (SIGTERM)", file=sys.stderr)
            return 143
        except KeyboardInterrupt:
            print("minitransformer: interrupted", file=sys.stderr)
            return 130


def threading_is_main():
    import threading

    return threading.current_thread() is threading.main_thread()
