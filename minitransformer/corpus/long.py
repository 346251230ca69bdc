"""Long sentences for the toy grammar: coordination and relative clauses, 5 to 59 words.

    python -m minitransformer.corpus.long --out data/      # data/long-{train,valid,test}.tsv

The toy corpus (generate.py) stops at 12 English words, too short to show what Cho et al.
(2014) found: an encoder–decoder that squeezes the source into one fixed-length vector
translates worse and worse as sentences grow. Here the same clauses are joined into long
sentences, each rule of the toy grammar still applying inside every clause:

    coordination     S₁ and S₂                 ->  F₁ et F₂
    cause            S₁ because S₂             ->  F₁ parce que F₂   (parce qu'il, qu'un …)
    relative clause  the boy who sees the dog  ->  le garçon qui voit le chien

The relative clause is built as a clause of its own whose subject is the noun phrase it
modifies, so its verb agrees with that noun (the boys who see / les garçons qui voient),
and the main verb, after it, still agrees with the same noun (… qui voient le chien
dorment). "who" modifies people only, as in English; in French "qui" is the subject
relative for every noun, and it never elides (unlike "que").

The files:
  - long-test.tsv: a test split binned by English length (words, not counting the final
    "."): TEST_PER_BIN sentences in each bin of LENGTH_BINS, written bin by bin;
  - long-valid.tsv: VALID_PER_BIN per bin, the same way;
  - long-train.tsv: TRAIN_PER_BIN per bin, every length in equal measure, so that a model
    learns the constructions at every length it is tested on (the figure is about what a
    fixed-length vector can hold, not about lengths never seen in training).
Clauses are statements and negations without "you", "your" or "they" (one French
translation each), and none contains a held-out combination of the compositional split.
One English source lives in one split only. Everything is drawn from one random.Random
in a fixed order, so the same seed writes byte-identical files; the toy files are untouched.
"""

from __future__ import annotations

import argparse
import pathlib
import random
from dataclasses import replace

from .generate import Pair, SentenceSampler, held_out_in, weighted, write_tsv
from .grammar import NP, Clause, GrammarError, elide, english, english_np, french, french_np, glue, render
from .lexicon import NOUNS

SEED = 3141
# bins of English length in words: 5-9, 10-14, …, 55-59
LENGTH_BINS = tuple((low, low + 4) for low in range(5, 60, 5))
TRAIN_PER_BIN, VALID_PER_BIN, TEST_PER_BIN = 500, 20, 40
FILES = {"train": "long-train.tsv", "valid": "long-valid.tsv", "test": "long-test.tsv"}
CONNECTIVES = {"and": ("and", "et"), "because": ("because", "parce que")}
CONNECTIVE_WEIGHTS = {"and": 6, "because": 4}
RELATIVE_PROBABILITY = 0.5  # of a clause whose subject is a person noun
MOST_CLAUSES = 8


def source_length(english_sentence: str) -> int:
    """English words, not counting the final "." ."""
    return len(english_sentence.split()) - 1


def length_bin(english_sentence: str) -> tuple[int, int] | None:
    length = source_length(english_sentence)
    return next((bin_ for bin_ in LENGTH_BINS if bin_[0] <= length <= bin_[1]), None)


# --- the parts -------------------------------------------------------------------------------


def single_clause(sampler: SentenceSampler, moods=("statement", "negative")) -> tuple[Clause, str, str]:
    """A clause with one French translation and no held-out combination -> (clause, en, fr)."""
    while True:
        clause = sampler.clause()
        if clause.mood not in moods or held_out_in(clause):
            continue
        try:
            en, translations = render(clause)
        except GrammarError:
            continue
        if len(translations) == 1:
            return clause, en, translations[0]


def is_person(subject) -> bool:
    return isinstance(subject, NP) and NOUNS[subject.noun].kind == "person"


def relative_clause(head: NP, sampler: SentenceSampler) -> tuple[str, str] | None:
    """A random relative clause for ``head``: a clause about some person is drawn, and
    made about ``head`` (relative_from). None when the draw does not fit."""
    clause, _, _ = single_clause(sampler, moods=("statement",))
    if not is_person(clause.subject):
        return None
    return relative_from(clause, head)


def relative_from(clause: Clause, head: NP) -> tuple[str, str] | None:
    """("who sees the dog", "qui voit le chien"): ``clause`` with ``head`` as its subject,
    rendered (so its verb and predicate adjective agree with head) and head's own words
    cut off the front. None when that clause is not one the grammar renders once."""
    clause = replace(clause, subject=head)
    if held_out_in(clause):
        return None
    try:
        en, translations = render(clause)
    except GrammarError:
        return None
    head_en, head_fr = " ".join(english_np(head)) + " ", " ".join(french_np(head)) + " "
    fr = translations[0]
    if len(translations) != 1 or not en.startswith(head_en) or not fr.startswith(head_fr):
        return None
    return "who " + en[len(head_en) : -2], "qui " + fr[len(head_fr) : -2]


def with_relative(clause: Clause, en: str, fr: str, relative: tuple[str, str]) -> tuple[str, str]:
    """Insert the relative clause right after the subject noun phrase of the main clause."""
    head = clause.subject
    head_en, head_fr = " ".join(english_np(head)), " ".join(french_np(head))
    assert en.startswith(head_en + " ") and fr.startswith(head_fr + " "), (en, fr)
    return (f"{head_en} {relative[0]}{en[len(head_en):]}", f"{head_fr} {relative[1]}{fr[len(head_fr):]}")


def join(connective: str, first: tuple[str, str], second: tuple[str, str]) -> tuple[str, str]:
    """Join two sentences (each ending in " .") with "and" / "because"."""
    en_word, fr_word = CONNECTIVES[connective]
    fr_second = second[1]
    if fr_word == "parce que":  # que elides before a vowel sound: parce qu'il, parce qu'un
        que = elide("que", fr_second.split()[0])
        fr_joined = glue([first[1][:-2], "parce", que, fr_second])
    else:
        fr_joined = f"{first[1][:-2]} {fr_word} {fr_second}"
    return f"{first[0][:-2]} {en_word} {second[0]}", fr_joined


def long_sentence(sampler: SentenceSampler, n_clauses: int) -> Pair:
    """n_clauses clauses, some subjects given a relative clause, joined by connectives."""
    rng = sampler.rng
    sentence = None
    for _ in range(n_clauses):
        clause, en, fr = single_clause(sampler)
        if is_person(clause.subject) and rng.random() < RELATIVE_PROBABILITY:
            relative = relative_clause(clause.subject, sampler)
            if relative is not None:
                en, fr = with_relative(clause, en, fr, relative)
        if sentence is None:
            sentence = (en, fr)
        else:
            sentence = join(weighted(rng, CONNECTIVE_WEIGHTS), sentence, (en, fr))
    return sentence[0], (sentence[1],)


# --- the splits ------------------------------------------------------------------------------


def build_long_corpus(seed: int = SEED, per_bin: dict[str, int] | None = None) -> dict[str, list[Pair]]:
    """{"train", "valid", "test"}: each a list of (English, (French,)), grouped by length bin.
    per_bin: sentences per bin of each split (default: TRAIN/VALID/TEST_PER_BIN)."""
    rng = random.Random(seed)
    sampler = SentenceSampler(rng)
    wanted = {"test": TEST_PER_BIN, "valid": VALID_PER_BIN, "train": TRAIN_PER_BIN}
    if per_bin is not None:
        wanted = {name: per_bin[name] for name in wanted}
    per_bin = sum(wanted.values())
    pools: dict[tuple[int, int], dict[str, tuple[str, ...]]] = {bin_: {} for bin_ in LENGTH_BINS}
    seen: dict[str, None] = {}
    while any(len(pool) < per_bin for pool in pools.values()):
        # aim the number of clauses at a bin that is still short (about 6 words a clause)
        short = [bin_ for bin_ in LENGTH_BINS if len(pools[bin_]) < per_bin]
        target = rng.choice(short)
        n_clauses = max(1, min(MOST_CLAUSES, round((target[0] + 2) / 7 + rng.uniform(-0.5, 0.5))))
        en, translations = long_sentence(sampler, n_clauses)
        bin_ = length_bin(en)
        if bin_ is None or en in seen or len(pools[bin_]) >= per_bin:
            continue
        seen[en] = None
        pools[bin_][en] = translations
    splits: dict[str, list[Pair]] = {name: [] for name in wanted}
    for bin_ in LENGTH_BINS:
        pairs = list(pools[bin_].items())
        start = 0
        for name, count in wanted.items():
            splits[name].extend(pairs[start : start + count])
            start += count
    return {name: splits[name] for name in FILES}


def write_long_corpus(out_dir: str | pathlib.Path, seed: int = SEED) -> dict[str, int]:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {name: write_tsv(out / FILES[name], pairs) for name, pairs in build_long_corpus(seed).items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data", help="directory to write the .tsv files into")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    args = parser.parse_args(argv)
    for name, lines in write_long_corpus(args.out, args.seed).items():
        print(f"| `{FILES[name]}` | {lines:,} |")


if __name__ == "__main__":
    main()
