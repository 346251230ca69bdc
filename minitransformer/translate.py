"""``minitransformer translate``: English in, French out, with a look inside if asked.

    minitransformer translate "the black cat sleeps ."                  # runs/toy, greedy
    minitransformer translate "the black cat sleeps ." --beam 4 --checkpoint runs/toy
    minitransformer translate "the black cat sleeps ." --attention      # heatmaps in the terminal
    minitransformer translate "the black cat sleeps ." --png cat.png --html cat.html --trace cat
    minitransformer translate --input english.txt --output french.txt [--beam 4]

One sentence: the translation goes to stdout. --attention adds labelled heatmaps of the
encoder self-attention, the decoder self-attention and the cross-attention (--layer and
--head choose which; the heads' mean by default), the saliency, and a step-by-step view of
what each French piece attended to and depended on. --png, --html and --trace save the
same trace as an image, a page and .npz + .json files (minitransformer/trace.py); with
--head-importance heads.json (written by `minitransformer inspect heads`) the page also shows
every head's importance averaged over that data set.

A file: one sentence per line, decoded in batches of similar length. Lines are split on
"\n" only (a "\r" before it is dropped): a form feed or U+2028 inside a sentence is part of
the sentence, so N input lines always give N output lines, in order. An empty line stays an
empty line (with one warning). A line that cannot be translated (every piece unknown, or
longer than the model's positions) is, by default (--bad-lines skip), left empty in the
output with one warning naming the lines, so the other lines' translations are kept;
--bad-lines fail stops at the first one instead, and writes nothing. --output is written
atomically: the old file stays whole until the new one is complete. --no-cache recomputes
every prefix (slow; it exists to check the cache).

Bad input ends with one line on stderr and a non-zero exit: an empty sentence, one whose
every piece is unknown to the model, one longer than the model's positions (exit 1); an
--input that is not UTF-8 (exit 1, naming the line and column); a missing or incompatible
checkpoint (exit 1); options that do not go together or are out of range (exit 2). Text
from the input is echoed with its control characters escaped.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from .decode import DECODE_BATCH, decode_batches, generation_budget
from .messages import sanitize

DEFAULT_RUN = Path("runs") / "toy"
# beam search's length penalty ((5 + n) / 6)^α: past this the scores overflow for long outputs
MAX_LENGTH_PENALTY = 10.0
BAD_LINE_POLICIES = ("skip", "fail")


class TranslateError(Exception):
    """A problem with what the user gave; ``exit_code`` 1 for input, 2 for usage."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


def add_arguments(parser):
    parser.add_argument("text", nargs="?", help='an English sentence, quoted: "the black cat sleeps ."')
    parser.add_argument(
        "--checkpoint",
        metavar="RUN",
        help=f"a run directory or a checkpoint (default: {DEFAULT_RUN}, the last `make train`)",
    )
    parser.add_argument("--beam", type=int, default=1, metavar="K", help="beam size; 1 is greedy (default)")
    parser.add_argument(
        "--length-penalty", type=float, default=0.6, metavar="ALPHA", help="beam search's α in ((5+n)/6)^α (0.6)"
    )
    parser.add_argument(
        "--max-len", type=int, metavar="N", help="the most pieces to generate (default: 2 × source length + 10)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="recompute the whole prefix at every step (slow; checks the cache)"
    )
    parser.add_argument(
        "--attention", action="store_true", help="print attention heatmaps, the saliency and a step-by-step view"
    )
    parser.add_argument(
        "--layer", type=int, metavar="L", help="the layer --attention shows, from 1 (default: the last)"
    )
    parser.add_argument("--head", metavar="H", help="the head --attention shows, from 1, or 'mean' (default)")
    parser.add_argument("--png", metavar="FILE", help="save the attention grids and the saliency as a PNG image")
    parser.add_argument(
        "--png-summary", metavar="FILE", help="save only the last layer's cross-attention beside the saliency"
    )
    parser.add_argument("--html", metavar="FILE", help="save an interactive, self-contained HTML page")
    parser.add_argument(
        "--head-importance", metavar="JSON",
        help="with --html: also show the head importance of a data set, from `minitransformer inspect heads` "
        "(its heads.json)",
    )
    parser.add_argument("--trace", metavar="FILE", help="save the attention trace as FILE.npz + FILE.json")
    parser.add_argument("--input", metavar="FILE", help="translate FILE, one sentence per line")
    parser.add_argument("--output", metavar="FILE", help="with --input: write the translations here (default: stdout)")
    parser.add_argument(
        "--bad-lines",
        choices=BAD_LINE_POLICIES,
        default="skip",
        help="with --input: a line that cannot be translated is left empty with a warning (skip, default) "
        "or stops everything (fail)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DECODE_BATCH,
        metavar="B",
        help=f"sentences per batch for --input ({DECODE_BATCH})",
    )
    return parser


def shorten(text, limit=40):
    text = sanitize(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_options(args):
    """Options that cannot go together, before anything is loaded."""
    views = [name for name in ("attention", "png", "png_summary", "html", "trace") if getattr(args, name)]
    if args.text is not None and args.input:
        raise TranslateError("give either a sentence or --input FILE, not both", 2)
    if args.text is None and not args.input:
        raise TranslateError('give a sentence to translate ("the black cat sleeps .") or --input FILE', 2)
    if args.output and not args.input:
        raise TranslateError("--output goes with --input FILE; a single sentence's translation goes to stdout", 2)
    if args.head_importance and not args.html:
        raise TranslateError("--head-importance goes with --html FILE: the page shows it", 2)
    if args.input and views:
        raise TranslateError(f"--{views[0].replace('_', '-')} shows one sentence; it does not go with --input", 2)
    if args.beam < 1:
        raise TranslateError(f"--beam must be at least 1, got {args.beam}", 2)
    if args.max_len is not None and args.max_len < 1:
        raise TranslateError(f"--max-len must be at least 1, got {args.max_len}", 2)
    if args.batch_size < 1:
        raise TranslateError(f"--batch-size must be at least 1, got {args.batch_size}", 2)
    if not (math.isfinite(args.length_penalty) and 0.0 <= args.length_penalty <= MAX_LENGTH_PENALTY):
        raise TranslateError(
            f"--length-penalty must be a number from 0 to {MAX_LENGTH_PENALTY:g}, got {args.length_penalty}", 2
        )
    for option in ("png", "png_summary"):
        name = getattr(args, option)
        if name and Path(name).suffix.lower() != ".png":
            raise TranslateError(f"--{option.replace('_', '-')} writes a PNG image: its name must end in .png, "
                                 f"got {sanitize(name)}", 2)


def default_run():
    """runs/toy in the working directory, else in the checkout this package lives in."""
    if DEFAULT_RUN.exists():
        return DEFAULT_RUN
    beside_package = Path(__file__).resolve().parents[1] / DEFAULT_RUN
    if beside_package.exists():
        return beside_package
    raise TranslateError(
        f"no trained model at {DEFAULT_RUN}: run `make train` first, or name one with --checkpoint RUN"
    )


def load(args):
    """-> model, tokenizer; a CheckpointError or a missing module becomes one clear line."""
    try:
        from .checkpoint import CheckpointError, load_for_inference
    except ImportError as error:
        raise TranslateError(f"cannot load checkpoints: {error}") from None
    from .backends import BackendUnavailable

    path = Path(args.checkpoint) if args.checkpoint else default_run()
    try:
        model, tokenizer, _ = load_for_inference(path, backend=getattr(args, "backend", None) or "auto")
    except CheckpointError as error:
        raise TranslateError(f"cannot use the checkpoint: {error}") from None
    except BackendUnavailable as error:
        raise TranslateError(str(error), 2) from None
    return model, tokenizer


def source_ids(model, tokenizer, text):
    """The source ids of ``text``, or a TranslateError saying why it cannot be translated."""
    if not text.strip():
        raise TranslateError("the sentence is empty: there is nothing to translate")
    ids = [int(i) for i in tokenizer.encode_src(text)]
    # "▁" alone only marks a word boundary; the pieces that carry text decide
    pieces = tokenizer.src_pieces(ids)
    content = [i for i, piece in zip(ids, pieces) if piece.replace("▁", "")]
    unknown = sum(i == tokenizer.unk_id for i in content)
    if not content or unknown == len(content):
        raise TranslateError(
            f'nothing in "{shorten(text)}" is in the model\'s vocabulary: every piece is unknown (<unk>)'
        )
    if len(ids) > model.config.max_len:
        raise TranslateError(
            f"the sentence is {len(ids)} pieces long; this model reads at most {model.config.max_len} "
            "(its positional table): split it into shorter sentences"
        )
    if unknown:
        print(
            f'warning: {unknown} of {len(content)} pieces of "{shorten(text)}" are unknown to the model',
            file=sys.stderr,
        )
    return ids


def decode_max_len(args, model, src_len):
    """--max-len, else room for a translation somewhat longer than its source."""
    return generation_budget(src_len, model.config.max_len, args.max_len)


def view_choice(args, config):
    """--layer and --head as 0-based indices (None = the heads' mean), checked against the model."""
    layers = min(config.n_encoder_layers, config.n_decoder_layers)
    n_heads = config.n_heads
    layer = -1
    if args.layer is not None:
        if not 1 <= args.layer <= layers:
            raise TranslateError(f"--layer must lie in 1..{layers}, got {args.layer}", 2)
        layer = args.layer - 1
    head = None
    if args.head is not None and args.head.strip().lower() != "mean":
        try:
            head = int(args.head) - 1
        except ValueError:
            raise TranslateError(f"--head takes a number from 1 to {n_heads} or 'mean', got {args.head!r}", 2) from None
        if not 0 <= head < n_heads:
            raise TranslateError(f"--head must lie in 1..{n_heads}, got {args.head}", 2)
    return layer, head


def translate_one(args, model, tokenizer):
    from .decode import beam_search, greedy_decode

    layer, head = view_choice(args, model.config)
    dataset = read_dataset_importance(args, model)
    ids = source_ids(model, tokenizer, args.text)
    max_len = decode_max_len(args, model, len(ids))
    use_cache = not args.no_cache
    if not (args.attention or args.png or args.png_summary or args.html or args.trace):
        src = np.array([ids], dtype=np.int64)  # (1, S)
        if args.beam == 1:
            output = greedy_decode(model, src, tokenizer.bos_id, tokenizer.eos_id, max_len, use_cache)[0]
        else:
            output = beam_search(
                model, src, tokenizer.bos_id, tokenizer.eos_id, max_len, args.beam, args.length_penalty, use_cache
            )[0]
        print(tokenizer.decode_tgt(output))
        return 0
    # with any view: decode while recording the trace, then show it
    from .trace import record_trace

    meta = {"checkpoint": str(args.checkpoint or DEFAULT_RUN)}
    # the HTML page also shows rollout, integrated gradients and head importance (interpret/)
    trace = record_trace(
        model, tokenizer, ids, max_len, args.beam, args.length_penalty, use_cache, with_saliency=True, meta=meta,
        with_explanations=bool(args.html),
    )
    trace.source_text = args.text.strip()
    print(trace.output_text)
    save_views(args, trace, layer, head, dataset)
    return 0


def read_dataset_importance(args, model):
    """--head-importance heads.json -> what viz/html.py shows (None without the option)."""
    if not getattr(args, "head_importance", None):
        return None
    from .interpret.importance import read_importance
    from .model import Transformer

    if not isinstance(model, Transformer):
        raise TranslateError("--head-importance: this model has no attention heads to weigh (a recurrent model)")
    try:
        return read_importance(args.head_importance, model.config)
    except ValueError as error:
        raise TranslateError(f"--head-importance: {error}") from None


def save_views(args, trace, layer, head, dataset_importance=None):
    """Print or write the views the options ask for, of one recorded trace."""
    if args.attention:
        from .viz.terminal import render_trace

        print()
        print(render_trace(trace, layer, head))
    if args.trace:
        npz_path, json_path = trace.save(args.trace)
        print(f"wrote {npz_path} and {json_path}", file=sys.stderr)
    if args.png:
        from .viz.png import save_png

        save_png(trace, args.png)
        print(f"wrote {args.png}", file=sys.stderr)
    if args.png_summary:
        from .viz.png import save_png

        save_png(trace, args.png_summary, summary=True)
        print(f"wrote {args.png_summary}", file=sys.stderr)
    if args.html:
        from .viz.html import save_html

        save_html(trace, args.html, dataset_importance)
        print(f"wrote {args.html}", file=sys.stderr)


def read_input_lines(path):
    """--input FILE -> its lines, split on "\n" only; a TranslateError for a file that is
    missing, unreadable or not UTF-8 (naming the line and column of the first bad byte)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TranslateError(f"{sanitize(path)}: no such file") from None
    except OSError as error:
        raise TranslateError(f"{sanitize(path)}: cannot be read ({error.strerror or error})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise TranslateError(
            f"{sanitize(path)}: line {line} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {column})"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":  # the newline that ends the last line does not start another
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def encode_input_lines(lines, model, tokenizer, path, policy="skip"):
    """-> ({line number: source ids} of the lines to translate, empty line numbers, skipped
    (line number, reason) pairs). With policy "fail" the first unusable line raises."""
    if policy not in BAD_LINE_POLICIES:
        raise ValueError(f"policy must be one of {BAD_LINE_POLICIES}, got {policy!r}")
    encoded, empty, skipped = {}, [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            empty.append(number)
            continue
        try:
            encoded[number] = source_ids(model, tokenizer, line)
        except TranslateError as error:
            if policy == "fail":
                raise TranslateError(f"{sanitize(path)} line {number}: {error} (--bad-lines skip would leave it empty "
                                     "and translate the rest)") from None
            skipped.append((number, str(error)))
    return encoded, empty, skipped


def _line_list(numbers):
    return ", ".join(map(str, numbers[:5])) + (", …" if len(numbers) > 5 else "")


def translate_file(args, model, tokenizer):
    """--input FILE: every line, in batches of similar length; empty and skipped lines stay empty."""
    from .checkpoint import atomic_write

    path = Path(args.input)
    lines = read_input_lines(path)
    encoded, empty, skipped = encode_input_lines(lines, model, tokenizer, path, getattr(args, "bad_lines", "skip"))
    if empty:
        print(f"warning: {len(empty)} empty line(s) in {sanitize(path)} (line {_line_list(empty)}) stay empty in the output",
              file=sys.stderr)
    if skipped:
        first_number, first_reason = skipped[0]
        print(f"warning: {len(skipped)} line(s) of {sanitize(path)} cannot be translated and stay empty in the output "
              f"(line {_line_list([n for n, _ in skipped])}; line {first_number}: {first_reason})", file=sys.stderr)
    numbers = sorted(encoded)
    translations = {number: "" for number in empty + [n for n, _ in skipped]}
    started = time.perf_counter()
    outputs = decode_batches(model, [encoded[number] for number in numbers], tokenizer.bos_id, tokenizer.eos_id,
                             tokenizer.pad_id, args.batch_size, args.beam, args.length_penalty, not args.no_cache,
                             args.max_len)
    for number, ids in zip(numbers, outputs):
        # one output line per input line, whatever the pieces decode to
        translations[number] = tokenizer.decode_tgt(ids).replace("\n", " ")
    seconds = time.perf_counter() - started
    text = "".join(translations[number] + "\n" for number in range(1, len(lines) + 1))
    if args.output:
        atomic_write(Path(args.output), lambda handle: handle.write(text.encode("utf-8")))
        rate = len(numbers) / seconds if seconds > 0 else float("inf")
        print(
            f"translated {len(numbers)} sentences in {seconds:.1f} s ({rate:.0f}/s) into {args.output}", file=sys.stderr
        )
    else:
        sys.stdout.write(text)
    return 0


def run(args):
    """The translate command; returns the exit code. Problems end with one line on stderr."""
    try:
        check_options(args)
        model, tokenizer = load(args)
        if args.input:
            return translate_file(args, model, tokenizer)
        return translate_one(args, model, tokenizer)
    except TranslateError as error:
        print(f"minitransformer translate: error: {sanitize(error)}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # an output file that cannot be written, for one
        where = f"{error.filename}: " if error.filename else ""
        print(f"minitransformer translate: error: {sanitize(where)}{sanitize(error.strerror or error)}"
              + ("; the previous file, if any, is untouched" if args.output and error.filename == str(args.output) else ""),
              file=sys.stderr)
        return 1


def main(argv=None):
    """``python -m minitransformer.translate …``, the same as ``minitransformer translate …``."""
    from . import backends

    parser = argparse.ArgumentParser(prog="minitransformer translate", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--backend", choices=backends.NAMES, default=None, help="the attention core (default: auto)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
