"""Is attention an explanation? Every method of minitransformer/interpret/ scored against the
toy corpus's gold word alignments, and the heads weighed, removed and clustered.

    .venv/bin/python bench/bench_interpret.py              # writes bench/results/<cpu>-<isa>/interpret.{md,json}
    .venv/bin/python bench/bench_interpret.py --quick      # 20 pairs a set, fewer points: does it run?
    .venv/bin/python bench/bench_interpret.py --sentences 1078   # every pair of the test set

The model is the trained toy run, runs/toy (trained here first, niced, when it is missing:
`minitransformer train --config toy`, about 10 minutes on 2 cores).

1. Alignment error rate, on the first --sentences pairs of data/toy-test.tsv and of
   data/toy-test-compositional.tsv against their .align files: every method, the raw
   attention of every cross-attention head, the best head and the head mean. Each French
   word is aligned to its highest-scoring English word (interpret/aer.py).
2. Faithfulness: deletion curves on the same pairs, k = 1 … 3 English words removed, with a
   random ranking as the floor (interpret/faithfulness.py).
3. Integrated gradients' completeness gap at the step count used.
4. Heads: importance E|∂L/∂g| on the test pairs, BLEU with each head removed and pruning
   curves (least important first, and random order) on the first --bleu-sources test
   sources, and the clustering of the encoder's and the decoder's self-attention heads on
   --cluster-sentences pairs.
5. The gradient of an attention weight with respect to the input (the notes' gradient
   interpretability): for every encoder head and every query, the query's strongest key,
   and which source token's embedding moves that weight most, ‖∂A[q, k]/∂e_s‖: the key's
   own token, the query's own token, or another one; and for every cross-attention head and
   step t (teacher-forced), whether the source key's token, another source token, the step's
   own decoder input or another decoder input moves A[t, s] most (‖∂A/∂e‖ and ‖∂A/∂u‖).
6. The same head analyses on the Tatoeba run (--tatoeba-run, default runs/tatoeba; read only,
   never copied) on the pairs of --tatoeba-data (../shared/data/tatoeba-fra-eng-valid.tsv)
   when both exist: importance on the first 4 × --bleu-sources pairs, BLEU on --bleu-sources
   sources, clustering on --cluster-sentences pairs. Otherwise the report says it was skipped
   and why. Tatoeba has no gold alignments.

    .venv/bin/python bench/bench_interpret.py --only tatoeba --tatoeba-run runs/tatoeba
        # that part alone, merged into this machine's report (which it starts when there is none)

Figures go to docs/images/interpret-*.png (chapter 11).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 pairs a set, few BLEU sources")
    parser.add_argument("--sentences", type=int, default=200, help="pairs per test set for AER and deletion (200)")
    parser.add_argument("--ig-steps", type=int, default=128, help="integrated gradients' steps (128)")
    parser.add_argument("--bleu-sources", type=int, default=200, help="test sources for ablation BLEU (200)")
    parser.add_argument("--cluster-sentences", type=int, default=100, help="pairs for head clustering (100)")
    parser.add_argument("--run", default=str(ROOT / "runs" / "toy"), help="the toy run (runs/toy)")
    parser.add_argument("--tatoeba-run", default=str(ROOT / "runs" / "tatoeba"),
                        help="the trained Tatoeba run directory (runs/tatoeba); read only")
    parser.add_argument("--tatoeba-data", default=str(ROOT.parent / "shared" / "data" / "tatoeba-fra-eng-valid.tsv"),
                        help="Tatoeba pairs for the head analyses (../shared/data/tatoeba-fra-eng-valid.tsv)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (1)")
    parser.add_argument("--only", choices=("weight-gradient", "heads", "tatoeba"),
                        help="recompute only this part, into the report already written (the rest is kept)")
    return parser.parse_args()


ARGS = parse_arguments() if __name__ == "__main__" else None
if ARGS is not None:
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402

from common import machine_info, markdown_table, results_dir, write_json, write_text  # noqa: E402

IMAGES = ROOT / "docs" / "images"
TEST_SETS = {"test": "toy-test", "compositional": "toy-test-compositional"}
FRACTIONS = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]


def ensure_run(run):
    """Train the toy model into `run` (niced) unless it already holds a checkpoint."""
    if (Path(run) / "checkpoints").exists() and any((Path(run) / "checkpoints").iterdir()):
        return
    print(f"bench_interpret: no trained model in {run}; training one (about 10 minutes)", flush=True)
    command = ["nice", "-n", "19", sys.executable, "-m", "minitransformer", "train", "--config", "toy",
               "--out", str(run), "--no-progress"]
    subprocess.run(command, cwd=ROOT, check=True)


def batch_level_importance(model, examples, pad_id, max_tokens=2048):
    """The estimate the project used before the per-sentence mean, for comparison:
    E_batch |∂L_batch/∂g_h| over batches of max_tokens, normalized per layer."""
    from minitransformer.batching import Batcher
    from minitransformer.interpret.gates import gate_gradients, head_gates
    from minitransformer.interpret.importance import normalize_per_layer

    total, count = None, 0
    with head_gates(model):
        for _, batch in Batcher(examples, max_tokens, seed=0, pad_id=pad_id).iterate(epoch=0):
            model.loss_and_grads(model.xp.asarray(batch.src), model.xp.asarray(batch.tgt_in),
                                 model.xp.asarray(batch.tgt_out))
            magnitude = {stack: np.abs(g) for stack, g in gate_gradients(model).items()}
            total = magnitude if total is None else {k: total[k] + magnitude[k] for k in total}
            count += 1
    return {stack: normalize_per_layer(value / count) for stack, value in total.items()}


def rank_agreement(first, second):
    """Spearman's ρ between two {stack: (L, H)} scores over all heads (no ties expected)."""
    a = np.concatenate([first[k].ravel() for k in first])
    b = np.concatenate([second[k].ravel() for k in first])
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def head_analyses(model, tokenizer, pairs, sources, references, cluster_pairs, label, quick):
    """Importance, ablation, pruning curves and clustering of one model: a dict, and figures."""
    from minitransformer.interpret import ablation, clustering, importance, plots
    from minitransformer.interpret.evaluate import collect_head_maps

    examples = [(tokenizer.encode_src(en), tokenizer.encode_tgt(fr)) for en, fr in pairs]
    start = time.perf_counter()
    scores = importance.head_importance(model, examples, model.config.pad_id, progress=True)
    batch_scores = batch_level_importance(model, examples, model.config.pad_id)
    base, table = ablation.ablation_table(model, tokenizer, sources, references, progress=True)
    fractions = FRACTIONS[::2] if quick else FRACTIONS
    curves = {
        "least important first": ablation.pruning_curve(model, tokenizer, sources, references,
                                                        importance.ranked_heads(scores), fractions, progress=True),
        "random order": ablation.pruning_curve(model, tokenizer, sources, references,
                                               ablation.random_order(model.config, seed=0), fractions, progress=True),
        "least important first, batch-level importance": ablation.pruning_curve(
            model, tokenizer, sources, references, importance.ranked_heads(batch_scores), fractions, progress=True),
    }
    clusters = {}
    for stack in ("encoder", "decoder_self"):
        maps, punctuation = collect_head_maps(model, tokenizer, cluster_pairs, stack)
        result = clustering.cluster_heads(maps, punctuation, n_clusters=4)
        clusters[stack] = result
        plots.dendrogram(result, IMAGES / f"interpret-{label}-clusters-{stack}.png",
                         title=f"{label}: {stack} self-attention heads, Jensen–Shannon distance")
    plots.importance_map(scores, IMAGES / f"interpret-{label}-importance.png", ablation=table)
    plots.pruning_plot(curves, IMAGES / f"interpret-{label}-pruning.png", title=f"{label}: BLEU as heads are removed")
    return {
        "importance": {stack: value.tolist() for stack, value in scores.items()},
        "importance_batch_level": {stack: value.tolist() for stack, value in batch_scores.items()},
        "importance_rank_agreement": rank_agreement(scores, batch_scores),
        "bleu": base,
        "ablation_bleu_change": {stack: value.tolist() for stack, value in table.items()},
        "pruning": curves,
        "clusters": {stack: {"names": r.names, "labels": r.labels.tolist(), "head_patterns": r.head_patterns,
                             "cluster_patterns": r.cluster_patterns,
                             "head_scores": [{k: float(v) for k, v in s.items()} for s in r.head_scores]}
                     for stack, r in clusters.items()},
        "seconds": time.perf_counter() - start,
    }


def weight_gradient_part(model, tokenizer, pairs):
    """Which source token moves each encoder head's strongest weights: {"L0H1": {...}}."""
    from minitransformer.interpret.gates import attention_layers
    from minitransformer.interpret.weight_gradient import attention_weight_gradient

    from minitransformer.layers.encoder import encoder_attention_probs

    counts = {}
    xp = model.xp
    for english, _ in pairs:
        ids = [int(i) for i in tokenizer.encode_src(english)]
        _, _, (_, cache) = model.encode(xp.asarray([ids]))
        maps = [np.asarray(probs[0]) for probs in encoder_attention_probs(cache)]
        for layer in range(len(attention_layers(model.config)["encoder"])):
            for head in range(model.config.n_heads):
                tally = counts.setdefault(f"L{layer}H{head}", {"key": 0, "query": 0, "other": 0})
                for query in range(len(ids)):
                    key = int(np.argmax(maps[layer][head, query]))
                    _, gradient = attention_weight_gradient(model, ids, layer, head, query, key)
                    strongest = int(np.argmax(np.linalg.norm(gradient, axis=1)))
                    tally["key" if strongest == key else "query" if strongest == query else "other"] += 1
    return {name: {k: v / sum(t.values()) for k, v in t.items()} for name, t in counts.items()}


def cross_weight_gradient_part(model, tokenizer, pairs):
    """The same for the cross-attention, teacher-forced on the reference: for each head and
    step t, its strongest source key s; which input moves A[t, s] most, among the source
    tokens (‖∂A/∂e‖) and the decoder inputs <s> y_0 … (‖∂A/∂u‖)? {"L1H2": {...}}."""
    from minitransformer.interpret.steps import decoder_input
    from minitransformer.interpret.weight_gradient import decoder_weight_gradient

    counts = {}
    for english, french in pairs:
        ids = [int(i) for i in tokenizer.encode_src(english)]
        tgt_in = decoder_input(list(tokenizer.encode_tgt(french)) + [tokenizer.eos_id], tokenizer.bos_id)
        _, cache = model.forward(model.xp.asarray([ids]), model.xp.asarray([tgt_in]))
        maps = [np.asarray(probs[0]) for probs in model.attention_maps(cache)["cross"]]  # [(H, T, S)]
        for layer, head in np.ndindex(len(maps), model.config.n_heads):
            tally = counts.setdefault(f"L{layer}H{head}", dict.fromkeys(
                ("key", "other source", "query", "other decoder input"), 0))
            for step in range(len(tgt_in)):
                key = int(np.argmax(maps[layer][head, step]))
                result = decoder_weight_gradient(model, ids, tgt_in, "cross", layer, head, step, key)
                source, target = np.linalg.norm(result.source, axis=1), np.linalg.norm(result.target, axis=1)
                if source.max() >= target.max():
                    tally["key" if int(np.argmax(source)) == key else "other source"] += 1
                else:
                    tally["query" if int(np.argmax(target)) == step else "other decoder input"] += 1
    return {name: {k: v / sum(t.values()) for k, v in t.items()} for name, t in counts.items()}


def cross_weight_gradient_markdown(result):
    rows = [[name] + [f"{share:.0%}" for share in t.values()] for name, t in result.items()]
    return ["For each cross-attention head and each step t (teacher-forced on the reference), its strongest "
            "source key s; which input moves A[t, s] most, among the source embeddings and the decoder's input "
            "embeddings (<s> y_0 …, the query's own being u_t)?", "",
            markdown_table(["cross head", "the key's source token", "another source token",
                            "the query's decoder input", "another decoder input"], rows), ""]


def weight_gradient_markdown(result):
    rows = [[name, f"{t['key']:.0%}", f"{t['query']:.0%}", f"{t['other']:.0%}"] for name, t in result.items()]
    return ["## The gradient of an attention weight with respect to the input", "",
            "For each encoder head and each query q, its strongest key k; which source token's embedding "
            "moves A[q, k] most (largest ‖∂A[q, k]/∂e_s‖)? When q = k the token counts as the key.", "",
            markdown_table(["encoder head", "the key's token", "the query's token", "another token"], rows), ""]


def heads_markdown(result, label):
    rows = []
    for stack, table in result["importance"].items():
        for layer, row in enumerate(table):
            changes = result["ablation_bleu_change"][stack][layer]
            rows.append([stack, layer] + [f"{value:.2f} ({change:+.1f})" for value, change in zip(row, changes)])
    n_heads = len(rows[0]) - 2
    lines = [f"### Heads of the {label} model", "",
             f"BLEU of the whole model {result['bleu']:.1f}. Each cell: importance (normalized per layer), "
             "and in brackets the BLEU change with that one head removed.", "",
             markdown_table(["stack", "layer"] + [f"head {h}" for h in range(n_heads)], rows), "",
             f"Importance is E_x |∂L(x)/∂g_h| per sentence; the batch-level estimate E_batch |∂L/∂g_h| (batches "
             f"of 2,048 tokens) ranks the heads with Spearman ρ = {result['importance_rank_agreement']:.3f} "
             "against it." if "importance_rank_agreement" in result else "", "",
             "Pruning: BLEU with a fraction of all heads removed.", ""]
    curves = result["pruning"]
    header = ["order"] + [f"{fraction:.0%}" for fraction, _, _ in next(iter(curves.values()))]
    lines += [markdown_table(header, [[name] + [f"{bleu:.1f}" for _, _, bleu in curve] for name, curve in curves.items()]), ""]
    for stack, clusters in result["clusters"].items():
        members = {}
        for name, label_, scores in zip(clusters["names"], clusters["labels"], clusters["head_scores"]):
            top = max(scores, key=scores.get)
            members.setdefault(label_, []).append(f"{name} ({top} {scores[top]:.2f})")
        lines.append(f"Clusters of the {stack} heads (4, average linkage on JS distance; each head with its "
                     "largest pattern weight, a cluster named by its members' mean): " + "; ".join(
            f"**{clusters['cluster_patterns'][c]}**: {', '.join(m)}" for c, m in sorted(members.items())))
        lines.append("")
    return lines


def tatoeba_part(args, n_bleu, n_cluster):
    """The head analyses of the trained Tatoeba run on its validation pairs, or why not."""
    from minitransformer.checkpoint import load_for_inference
    from minitransformer.data import group_references
    from minitransformer.interpret.evaluate import read_pairs

    run, data = Path(args.tatoeba_run), Path(args.tatoeba_data)
    if not data.exists():
        return f"skipped: {data} is absent"
    if not (run / "checkpoints").exists():
        return (f"skipped: no trained Tatoeba model in {run} "
                "(`make train CONFIG=tatoeba` first, or name one with --tatoeba-run)")
    machine = machine_info()  # the load as the part starts
    model, tokenizer, info = load_for_inference(run, backend="numpy")
    pairs = read_pairs(data)[: 4 * n_bleu]
    sources, references = group_references(pairs)
    result = head_analyses(model, tokenizer, pairs, sources[:n_bleu], references[:n_bleu],
                           pairs[:n_cluster], "tatoeba", args.quick)
    return result | {"run": str(info.get("checkpoint")), "data": str(data), "importance_pairs": len(pairs),
                     "bleu_sources": len(sources[:n_bleu]), "cluster_sentences": len(pairs[:n_cluster]),
                     "machine": machine, "machine_at_end": machine_info()}


def update_report(args, model, tokenizer, test_pairs, n_bleu, n_cluster):
    """--only PART: recompute one part into the report already written, keeping the others
    (--only tatoeba on a machine without a report writes one with that part alone)."""
    import json

    from minitransformer.data import group_references

    path = results_dir() / "interpret.json"
    if path.exists():
        report = json.loads(path.read_text())
    elif args.only == "tatoeba":
        report = {"machine": machine_info(), "run": None, "settings": vars(args) | {
            "bleu_sources": n_bleu, "cluster_sentences": n_cluster}}
    else:
        raise SystemExit(f"bench_interpret: --only {args.only} needs {path}; run the whole benchmark first")
    if args.only == "weight-gradient":
        report["weight_gradient"] = weight_gradient_part(model, tokenizer, test_pairs[:n_cluster])
        report["weight_gradient_cross"] = cross_weight_gradient_part(model, tokenizer, test_pairs[:n_cluster])
        report["weight_gradient_run"] = {"run": str(args.run), "machine": machine_info()}
    elif args.only == "heads":
        sources, references = group_references(test_pairs)
        machine = machine_info()
        report["heads"] = head_analyses(model, tokenizer, test_pairs, sources[:n_bleu], references[:n_bleu],
                                        test_pairs[:n_cluster], "toy", args.quick) | {
            "run": str(args.run), "machine": machine}
    else:
        report["tatoeba"] = tatoeba_part(args, n_bleu, n_cluster)
    write_json("interpret", report)
    write_text("interpret.md", markdown(report))
    print(markdown(report))


def main():
    from minitransformer.checkpoint import load_for_inference
    from minitransformer.interpret import plots
    from minitransformer.interpret.evaluate import read_aligned_pairs, read_pairs, score_alignments
    from minitransformer.interpret.methods import explain_pair
    from minitransformer.data import group_references

    args = ARGS
    n_sentences = 20 if args.quick else args.sentences
    n_bleu = 40 if args.quick else args.bleu_sources
    n_cluster = 20 if args.quick else args.cluster_sentences
    IMAGES.mkdir(parents=True, exist_ok=True)
    if args.only == "tatoeba":  # needs no toy model
        update_report(args, None, None, None, n_bleu, n_cluster)
        return
    ensure_run(args.run)
    model, tokenizer, info = load_for_inference(args.run, backend="numpy")
    test_pairs = read_pairs(ROOT / "data" / "toy-test.tsv")
    if args.only is not None:
        update_report(args, model, tokenizer, test_pairs, n_bleu, n_cluster)
        return
    report = {"machine": machine_info(), "run": str(info.get("checkpoint")), "settings": vars(args) | {
        "sentences": n_sentences, "bleu_sources": n_bleu, "cluster_sentences": n_cluster}}

    # 1-3: AER, deletion, completeness on both gold sets
    for name, stem in TEST_SETS.items():
        pairs, gold = read_aligned_pairs(ROOT / "data" / f"{stem}.tsv", ROOT / "data" / f"{stem}.align")
        start = time.perf_counter()
        result = score_alignments(model, tokenizer, pairs[:n_sentences], gold[:n_sentences],
                                  ig_steps=args.ig_steps, progress=True)
        result["seconds"] = time.perf_counter() - start
        gaps = np.array(result.pop("ig_completeness"))
        result["ig_completeness"] = {"median": float(np.median(gaps)), "p90": float(np.quantile(gaps, 0.9)),
                                     "max": float(gaps.max()), "within_1_percent": float(np.mean(gaps < 0.01))}
        report[name] = result
    # one sentence, every method, for the chapter
    pairs, gold = read_aligned_pairs(ROOT / "data" / "toy-test.tsv", ROOT / "data" / "toy-test.align")
    example = next(i for i, (en, _) in enumerate(pairs) if "not" in en.split() and len(en.split()) >= 7)
    explained = explain_pair(model, tokenizer, *pairs[example], ig_steps=args.ig_steps)
    plots.methods_side_by_side(explained, gold[example], IMAGES / "interpret-methods.png")
    report["example"] = {"pair": pairs[example], "gold": sorted(gold[example])}

    # 4: heads of the toy model
    report["weight_gradient"] = weight_gradient_part(model, tokenizer, test_pairs[:n_cluster])
    report["weight_gradient_cross"] = cross_weight_gradient_part(model, tokenizer, test_pairs[:n_cluster])
    sources, references = group_references(test_pairs)
    report["heads"] = head_analyses(model, tokenizer, test_pairs, sources[:n_bleu], references[:n_bleu],
                                    test_pairs[:n_cluster], "toy", args.quick)

    # 6: Tatoeba, when there is a run and the data
    report["tatoeba"] = tatoeba_part(args, n_bleu, n_cluster)

    write_json("interpret", report)
    write_text("interpret.md", markdown(report))
    print(markdown(report))


def markdown(report):
    settings = report["settings"]
    machine = report["machine"]
    lines = ["# Is attention an explanation? (bench/bench_interpret.py)", ""]
    if "test" in report:
        lines += toy_markdown(report, settings, machine)
    if "weight_gradient" in report:
        lines += weight_gradient_markdown(report["weight_gradient"])
        if "weight_gradient_run" in report:  # recomputed alone (--only weight-gradient)
            machine = report["weight_gradient_run"]["machine"]
            lines += [f"Toy model: {report['weight_gradient_run']['run']}; {machine['cpu_model']} "
                      f"({machine['cpu_id']}), {machine['date_utc']}.", ""]
    if "weight_gradient_cross" in report:
        lines += cross_weight_gradient_markdown(report["weight_gradient_cross"])
    if "heads" in report:
        lines += ["## Heads", ""]
        if "machine" in report["heads"]:  # recomputed alone (--only heads)
            machine, load = report["heads"]["machine"], report["heads"]["machine"]["load_average_1_5_15min"]
            lines += [f"Toy model: {report['heads']['run']}; {machine['cpu_model']} ({machine['cpu_id']}), "
                      f"{machine['date_utc']}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start.", ""]
        lines += heads_markdown(report["heads"], "toy")
    return "\n".join(lines + tatoeba_markdown(report.get("tatoeba", "not run"))) + "\n"


def tatoeba_markdown(tatoeba):
    if not isinstance(tatoeba, dict):
        return [f"Tatoeba: {tatoeba}.", ""]
    lines = ["## Tatoeba", ""]
    if "run" in tatoeba:
        machine, load = tatoeba["machine"], tatoeba["machine"]["load_average_1_5_15min"]
        lines += [f"Tatoeba model: {tatoeba['run']}; importance on the first {tatoeba['importance_pairs']} pairs "
                  f"of {Path(tatoeba['data']).name}, BLEU on {tatoeba['bleu_sources']} of its sources, clustering on "
                  f"{tatoeba['cluster_sentences']} pairs. {machine['cpu_model']} ({machine['cpu_id']}, "
                  f"{machine['isa_path']} path), {machine['usable_cpus']} usable CPUs shared with other jobs, "
                  f"{machine['date_utc']}; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the start; "
                  f"{tatoeba['seconds']:.0f} s.", ""]
    return lines + heads_markdown(tatoeba, "Tatoeba")


def toy_markdown(report, settings, machine):
    lines = [f"Model: {report['run']}. {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs, "
             f"{machine['date_utc']}. {settings['sentences']} pairs per set; integrated gradients with "
             f"{settings['ig_steps']} steps; alignment = each French word to its highest-scoring English word.", "",
             "## Alignment error rate against the gold alignments (lower is better)", ""]
    names = list(report["test"]["aer"])
    rows = [[name] + [f"{report[s]['aer'][name]:.3f}" for s in TEST_SETS] for name in names]
    rows.append(["best single head (per set)"] + [
        f"{report[s]['best_head'][2]:.3f} (L{report[s]['best_head'][0]}H{report[s]['best_head'][1]})" for s in TEST_SETS])
    lines += [markdown_table(["method", "test", "compositional"], rows), "",
              "Raw cross-attention, every head (test / compositional):", ""]
    head_rows = []
    test_heads, comp_heads = np.array(report["test"]["head_aer"]), np.array(report["compositional"]["head_aer"])
    for layer in range(test_heads.shape[0]):
        head_rows.append([f"layer {layer}"] + [f"{a:.3f} / {b:.3f}" for a, b in zip(test_heads[layer], comp_heads[layer])])
    lines += [markdown_table(["decoder layer"] + [f"head {h}" for h in range(test_heads.shape[1])], head_rows), "",
              "## Faithfulness: deletion (higher is more faithful)", "",
              "Mean drop of the French word's probability when its top-k English words are deleted "
              "(turned into padding); AOPC is the mean over k = 1–3.", ""]
    rows = []
    for method in report["test"]["aopc"]:
        row = [method]
        for s in TEST_SETS:
            curve = report[s]["deletion"][method]
            row.append(" / ".join(f"{v:.3f}" for v in curve) + f" (AOPC {report[s]['aopc'][method]:.3f})")
        rows.append(row)
    lines += [markdown_table(["method", "test: Δ(1) / Δ(2) / Δ(3)", "compositional"], rows), "",
              "## Integrated gradients: completeness", ""]
    rows = [[s, f"{report[s]['ig_completeness']['median']:.2%}", f"{report[s]['ig_completeness']['p90']:.2%}",
             f"{report[s]['ig_completeness']['max']:.2%}", f"{report[s]['ig_completeness']['within_1_percent']:.0%}"]
            for s in TEST_SETS]
    lines += ["‖Σ_s IG − (f(x) − f(0))‖ / ‖f(x) − f(0)‖ per sentence:", "",
              markdown_table(["set", "median", "90th percentile", "max", "sentences within 1 %"], rows), ""]
    return lines


if __name__ == "__main__":
    main()
