"""The command line: ``minitransformer train`` and ``minitransformer translate``.

    minitransformer train --config toy                     # see minitransformer/train.py
    minitransformer translate --checkpoint runs/toy "the black cat sleeps ."
    python -m minitransformer train --backend numpy        # the same, without the entry point

Every subcommand takes ``--backend {numpy,cython,cupy,auto}``; its default is the
environment variable MINITRANSFORMER_BACKEND, else auto. Problems with what the user gave
(a backend that cannot run here, a bad data file, a bad checkpoint or config) end with ONE
line on stderr and a non-zero exit code, never a traceback: 2 for a backend or usage
error, 1 for bad input or a diverged run, 130 for Ctrl-C.
"""

import argparse
import os
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,translate}")

    train_parser = commands.add_parser("train", help="train a model (see minitransformer/train.py)")
    train.add_arguments(train_parser)
    _add_backend_argument(train_parser)
    train_parser.set_defaults(run=train.run)

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
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    """Warnings for a person at a terminal: the message, without the source line."""
    print(f"warning: {message}", file=file if file is not None else sys.stderr)


def main(argv=None):
    """Run the command line; returns the exit code."""
    from .checkpoint import CheckpointError
    from .configs import ConfigError
    from .data import DataError
    from .tokenizer import TokenizerError
    from .train import TrainingDiverged

    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # every step reuses its temporaries without page faults (memory.py)
    if args.backend is None:  # resolved here, once, so that every subcommand sees the same choice
        args.backend = os.environ.get(backends.ENV_VAR) or "auto"
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings
        try:
            # fail fast, before any data is read, when the backend cannot run here
            backends.get(args.backend)
        except (backends.BackendUnavailable, ValueError) as error:  # ValueError: a bad $MINITRANSFORMER_BACKEND
            print(f"minitransformer: error: {error}", file=sys.stderr)
            return 2
        try:
            return int(args.run(args) or 0)
        except TrainingDiverged as error:
            print(f"minitransformer: training diverged: {error}", file=sys.stderr)
            return 1
        except (DataError, CheckpointError, ConfigError, TokenizerError, OSError) as error:
            print(f"minitransformer: error: {error}", file=sys.stderr)
            return 1
        except backends.BackendUnavailable as error:
            print(f"minitransformer: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("minitransformer: interrupted", file=sys.stderr)
            return 130
