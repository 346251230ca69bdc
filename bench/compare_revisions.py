"""Training throughput of two git revisions, measured in one run, turn about.

    python bench/compare_revisions.py 4568b54            # that commit against HEAD
    python bench/compare_revisions.py OLD NEW --rounds 5 --steps 8

A refactor is allowed to move code, not to slow the step down. This script checks that
claim the way the machines here allow: each revision is checked out into its own
worktree under bench/scratch/revisions/ (its Cython kernels built there), and the two run
`bench/bench_train.py --no-torch` alternately, OLD, NEW, NEW, OLD, OLD, NEW, …, so a load
change on the shared machine falls on both and neither always runs second. Each round is a fresh process; the figure per round is
the Cython backend's training tokens/s over the same Tatoeba batches (every revision
builds the same batches from the same seed). The report gives each revision's median and
the ratio NEW / OLD, and writes bench/results/<cpu>-<isa>/revisions.{md,json}.

The worktrees see the Tatoeba pairs through a `shared` link beside them (bench_train
reads ../shared/data relative to its tree). They are left in place for the next run;
`git worktree prune` after deleting bench/scratch/revisions/ removes them.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import common

REVISIONS = common.SCRATCH / "revisions"


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the revision before the change (a commit, tag or branch)")
    parser.add_argument("new", nargs="?", default="HEAD", help="the revision after it (HEAD)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each revision, alternating (5)")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per run (8)")
    return parser.parse_args(argv)


def git(*args):
    return subprocess.run(["git", *args], cwd=common.REPO, check=True, capture_output=True, text=True).stdout.strip()


def checkout(revision):
    """A built worktree of ``revision`` -> (its directory, its full commit id)."""
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
    tree = REVISIONS / commit[:12]
    if not (tree / "setup.py").is_file():
        REVISIONS.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--detach", str(tree), commit)
    shared = REVISIONS / "shared"
    if not shared.exists():
        shared.symlink_to(common.TATOEBA.parent.resolve(), target_is_directory=True)
    print(f"building the kernels of {revision} ({commit[:12]}) in {tree.relative_to(common.REPO)}…", file=sys.stderr)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL)
    return tree, commit


def measure(tree, steps):
    """One bench_train run in ``tree`` -> the Cython backend's training tokens/s."""
    environment = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, "bench/bench_train.py", "--no-torch", "--steps", str(steps)], cwd=tree,
                   env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    written = sorted((tree / "bench" / "results").glob("*/train.json"), key=lambda path: path.stat().st_mtime)
    results = json.loads(written[-1].read_text(encoding="utf-8"))["results"]
    return results["cython"]["tokens_per_second"] if "cython" in results else results["numpy"]["tokens_per_second"]


def main(argv=None):
    args = parse_arguments(argv)
    if not (common.TATOEBA / "tatoeba-fra-eng-train.tsv").is_file():
        print(f"compare_revisions: {common.TATOEBA} is absent; bench_train needs the Tatoeba pairs")
        return 0
    trees = {name: checkout(revision) for name, revision in (("old", args.old), ("new", args.new))}
    info = common.machine_info()
    figures = {"old": [], "new": []}
    for round_ in range(1, args.rounds + 1):
        # ABBA: old first in odd rounds, new first in even ones, so neither always runs
        # second (after the other has warmed the caches, or as a frequency boost fades)
        for name in ("old", "new") if round_ % 2 else ("new", "old"):
            figures[name].append(measure(trees[name][0], args.steps))
        print(f"round {round_}/{args.rounds}: old {figures['old'][-1]:,.0f}, new {figures['new'][-1]:,.0f} tokens/s",
              file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    ratio = medians["new"] / medians["old"]
    payload = {"machine": info, "load_average_after": os.getloadavg(), "steps": args.steps, "rounds": args.rounds,
               "old": {"revision": args.old, "commit": trees["old"][1], "tokens_per_second": figures["old"]},
               "new": {"revision": args.new, "commit": trees["new"][1], "tokens_per_second": figures["new"]},
               "median_tokens_per_second": medians, "ratio_new_over_old": ratio}
    common.write_json("revisions", payload)
    rows = [[name, payload[name]["commit"][:12], ", ".join(f"{v:,.0f}" for v in figures[name]), f"{medians[name]:,.0f}"]
            for name in ("old", "new")]
    text = f"""# Training throughput of two revisions

`python bench/compare_revisions.py {args.old} {args.new} --rounds {args.rounds} --steps {args.steps}`:
`bench/bench_train.py --no-torch --steps {args.steps}` (benchmark config, Tatoeba batches,
Cython backend) run {args.rounds} times per revision, alternating ABBA.

Machine: {info['cpu_model']} ({info['cpu_id']}), ISA path {info['isa_path']}, {info['usable_cpus']} CPUs;
load average at the start {info['load_average_1_5_15min'][0]:.1f}, at the end {payload['load_average_after'][0]:.1f}.

{common.markdown_table(['revision', 'commit', 'training tokens/s per round', 'median'], rows)}

New / old, medians: **{ratio:.3f}**.
"""
    common.write_text("revisions.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
