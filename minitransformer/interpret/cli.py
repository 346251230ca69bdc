"""`minitransformer inspect`: the methods of chapter 11 from the command line, each writing PNGs.

    minitransformer inspect heads   --checkpoint runs/toy --data data/toy-test.tsv   # importance, ablation, pruning
    minitransformer translate "the cat sleeps ." --html cat.html --head-importance inspect/heads.json
                                     # the trace page, with the data set's head importance below its own
    minitransformer inspect cluster --checkpoint runs/toy --stack encoder            # dendrogram and 2-D map
    minitransformer inspect align   --data data/toy-test.tsv --alignments data/toy-test.align
    minitransformer inspect attribute "the black cat sleeps ." --french "le chat noir dort ." \\
        --alignment "0-0 1-2 2-1 3-3 4-4" --layer 1 --head 2                       # every method side by side

Figures go to --out (default inspect/). A bad input ends with one line on stderr and exit
code 1 (an alignment file that does not fit the sentences, a layer or head out of range,
a run without its checkpoint or tokenizer), 2 for options that do not go together. Long
jobs (ablation over every head, integrated gradients over a data set) show a progress bar.
"""

import json
import sys
from pathlib import Path

from ..messages import sanitize

SUBCOMMANDS = ("heads", "cluster", "align", "attribute")


class InspectError(Exception):
    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


def add_arguments(parser, add_backend_argument=None):
    commands = parser.add_subparsers(dest="what", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")

    def common(sub, data=True):
        sub.add_argument("--checkpoint", help="a run directory or a checkpoint (default: runs/toy)")
        sub.add_argument("--out", default="inspect", help="folder for the figures and JSON (default: inspect/)")
        if data:
            sub.add_argument("--data", default="data/toy-test.tsv", help="English<TAB>French pairs (data/toy-test.tsv)")
            sub.add_argument("--sentences", type=int, default=200, help="use the first N pairs (200)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        if add_backend_argument is not None:
            add_backend_argument(sub)

    heads = commands.add_parser("heads", help="head importance, BLEU with each head removed, pruning curves")
    common(heads)
    heads.add_argument("--no-ablation", action="store_true", help="importance only (no decoding)")
    cluster = commands.add_parser("cluster", help="cluster the self-attention heads by Jensen–Shannon distance")
    common(cluster)
    cluster.add_argument("--stack", choices=("encoder", "decoder_self"), default="encoder")
    cluster.add_argument("--clusters", type=int, default=4, help="how many clusters to cut the tree into (4)")
    align = commands.add_parser("align", help="AER of every method and head against an alignment file")
    common(align)
    align.add_argument("--alignments", required=True, help="one Pharaoh i-j line per pair of --data")
    align.add_argument("--ig-steps", type=int, default=64, help="integrated gradients' steps (64)")
    attribute = commands.add_parser("attribute", help="one sentence, every method side by side")
    common(attribute, data=False)
    attribute.add_argument("text", help='the English sentence, quoted: "the black cat sleeps ."')
    attribute.add_argument("--french", help="the French side (default: the model's greedy translation)")
    attribute.add_argument("--alignment", default="", help='gold links to outline, "i-j ..." (English i, French j)')
    attribute.add_argument("--layer", type=int, help="also show this cross-attention layer's head --head")
    attribute.add_argument("--head", type=int)
    attribute.add_argument("--ig-steps", type=int, default=64, help="integrated gradients' steps (64)")


def load(args):
    from ..checkpoint import CheckpointError, load_for_inference
    from ..tokenizer import TokenizerError

    path = Path(args.checkpoint) if args.checkpoint else Path("runs") / "toy"
    if not path.exists():
        raise InspectError(f"no run at {path}: train one (`make train`) or name it with --checkpoint RUN")
    try:
        model, tokenizer, _ = load_for_inference(path, backend=getattr(args, "backend", None) or "auto")
    except (CheckpointError, TokenizerError) as error:
        raise InspectError(f"cannot use the run {path}: {error}") from None
    return model, tokenizer


def read_data(args):
    from .evaluate import CorpusError, read_pairs

    if args.sentences < 1:
        raise InspectError(f"--sentences must be at least 1, got {args.sentences}", 2)
    try:
        return read_pairs(args.data)[: args.sentences]
    except CorpusError as error:
        raise InspectError(str(error)) from None


def out_dir(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_heads(args, model, tokenizer):
    from ..data import group_references
    from . import ablation, importance, plots

    pairs = read_data(args)
    progress = not args.no_progress
    examples = [(tokenizer.encode_src(en), tokenizer.encode_tgt(fr)) for en, fr in pairs]
    scores = importance.head_importance(model, examples, model.config.pad_id, progress=progress)
    out = out_dir(args)
    result = {"importance": {stack: value.tolist() for stack, value in scores.items()},
              "data": str(args.data), "sentences": len(pairs),
              "definition": "E_x |dL(x)/dg_h| over the sentences, normalized per layer (interpret/importance.py)"}
    table = None
    if not args.no_ablation:
        sources, references = group_references(pairs)
        result["bleu"], table = ablation.ablation_table(model, tokenizer, sources, references, progress=progress)
        result["ablation_bleu_change"] = {stack: value.tolist() for stack, value in table.items()}
        fractions = [i / 8 for i in range(8)]
        curves = {"least important first": ablation.pruning_curve(
                      model, tokenizer, sources, references, importance.ranked_heads(scores), fractions, progress),
                  "random order": ablation.pruning_curve(
                      model, tokenizer, sources, references, ablation.random_order(model.config), fractions, progress)}
        result["pruning"] = curves
        print(f"wrote {plots.pruning_plot(curves, out / 'pruning.png')}")
    print(f"wrote {plots.importance_map(scores, out / 'importance.png', ablation=table)}")
    for stack, value in scores.items():
        for layer, row in enumerate(value):
            change = "" if table is None else "   BLEU change: " + " ".join(f"{c:+5.1f}" for c in table[stack][layer])
            print(f"{stack:>12} layer {layer}: importance " + " ".join(f"{v:.2f}" for v in row) + change)
    (out / "heads.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run_cluster(args, model, tokenizer):
    from . import clustering, plots
    from .evaluate import collect_head_maps

    pairs = read_data(args)
    maps, punctuation = collect_head_maps(model, tokenizer, pairs, args.stack)
    if not 1 <= args.clusters <= len(maps):
        raise InspectError(f"--clusters must lie in 1–{len(maps)}, the number of {args.stack} heads", 2)
    result = clustering.cluster_heads(maps, punctuation, args.clusters)
    path = plots.dendrogram(result, out_dir(args) / f"clusters-{args.stack}.png")
    print(f"wrote {path}")
    for number, pattern in enumerate(result.cluster_patterns):
        members = [name for name, label in zip(result.names, result.labels) if label == number]
        print(f"cluster {number} ({pattern}): {', '.join(members)}")
    return 0


def run_align(args, model, tokenizer):
    from .aer import AlignmentFileError, read_alignments
    from .evaluate import CorpusError, read_pairs, score_alignments

    try:
        pairs = read_pairs(args.data)
        gold = read_alignments(args.alignments, pairs)
    except (CorpusError, AlignmentFileError) as error:
        raise InspectError(str(error)) from None
    except OSError as error:
        raise InspectError(f"cannot read {args.alignments}: {error.strerror}") from None
    if args.sentences < 1:
        raise InspectError(f"--sentences must be at least 1, got {args.sentences}", 2)
    report = score_alignments(model, tokenizer, pairs[: args.sentences], gold[: args.sentences],
                              ig_steps=args.ig_steps, progress=not args.no_progress)
    for method, value in report["aer"].items():
        print(f"{method:>36}: AER {value:.3f}")
    layer, head, value = report["best_head"]
    print(f"{'best cross-attention head':>36}: AER {value:.3f} (layer {layer}, head {head})")
    path = out_dir(args) / "align.json"
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return 0


def run_attribute(args, model, tokenizer):
    from ..translate import TranslateError
    from ..translate import source_ids as checked_source_ids
    from . import plots
    from .aer import parse_pharaoh
    from .gates import check_head
    from .methods import explain_pair
    from .words import WordMismatch

    if (args.layer is None) != (args.head is None):
        raise InspectError("--layer and --head go together", 2)
    if args.layer is not None:
        try:
            check_head(model.config, "cross", args.layer, args.head)
        except ValueError as error:
            raise InspectError(str(error)) from None
    try:
        ids = checked_source_ids(model, tokenizer, args.text)
    except TranslateError as error:
        raise InspectError(str(error)) from None
    french = args.french
    if french is None:
        from ..decode import greedy_decode

        output = greedy_decode(model, model.xp.asarray([ids]), tokenizer.bos_id, tokenizer.eos_id,
                               min(model.config.max_len, 2 * len(ids) + 10))[0]
        french = tokenizer.decode_tgt(output)
    try:
        gold = parse_pharaoh(args.alignment)
    except ValueError as error:
        raise InspectError(f"--alignment: {error}") from None
    n_en, n_fr = len(args.text.split()), len(french.split())
    outside = sorted((i, j) for i, j in gold if i >= n_en or j >= n_fr)
    if outside:
        i, j = outside[0]
        raise InspectError(f"--alignment: link {i}-{j} is outside the sentences ({n_en} English, {n_fr} French words)")
    try:
        explained = explain_pair(model, tokenizer, args.text, french, ig_steps=args.ig_steps)
    except WordMismatch as error:
        raise InspectError(f"cannot split into words: {error}") from None
    methods = None
    if args.layer is not None:
        name = f"attention L{args.layer}H{args.head}"
        explained.methods[name] = explained.heads[args.layer, args.head]
        methods = ["attention", name, "rollout", "gradient-weighted attention", "gradient × input",
                   "integrated gradients"]
    path = plots.methods_side_by_side(explained, gold, out_dir(args) / "attribute.png", methods=methods)
    print(f"{args.text}  ->  {french}")
    print(f"wrote {path}")
    return 0


def run(args):
    """The inspect command; returns the exit code. Problems end with one line on stderr."""
    try:
        model, tokenizer = load(args)
        return {"heads": run_heads, "cluster": run_cluster, "align": run_align,
                "attribute": run_attribute}[args.what](args, model, tokenizer)
    except InspectError as error:
        print(f"minitransformer inspect: error: {sanitize(error)}", file=sys.stderr)
        return error.exit_code
