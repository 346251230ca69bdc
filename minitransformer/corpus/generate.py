"""Generate the toy English->French corpus: sample sentence structures, render, split, write.

    python -m minitransformer.corpus.generate --out data/           # the committed files
    python -m minitransformer.corpus.generate --out /tmp/toy --seed 7

The recipe:

1. Sample. `SentenceSampler` draws a random `Clause` (grammar.py): a sentence template
   (intransitive, transitive, give, "X is ADJ", "X is PLACE", "where is X ?"), a mood
   (statement, negation, question), then words that make sense together (a subject that
   can do the verb, an object the verb takes, adjectives that fit the noun).
2. Render. `grammar.render_aligned` gives the English sentence, all its French translations
   and the gold word alignment of each.
3. Hold out. A fixed list of (adjective, noun) and (verb, noun) combinations, HELD_OUT,
   never occurs together in one sentence of train, valid or test; the compositional test
   split is made only of sentences that use them, with words all seen in training. A model
   that translates "the red car" having seen only red things and other cars generalises.
4. Split. Distinct English sentences are shuffled and cut into train/valid/test, so one
   English source (with all its French readings) lives in exactly one split.
5. Write. One pair a line, English<TAB>French, UTF-8, "\\n" line ends; beside each .tsv an
   .align file with the gold word alignment of the same line, "i-j" pairs (English word i,
   French word j, from 0) in Pharaoh format, as grammar.render_aligned derives them.

Everything is drawn from one `random.Random(seed)` in a fixed order and no set is ever
iterated, so the same seed writes byte-identical files on any machine and Python >= 3.10.
"""

from __future__ import annotations

import argparse
import pathlib
import random

from .grammar import NP, Clause, Place, render_aligned
from .lexicon import ADJECTIVES, NOUNS, VERBS, Adjective, Noun, Verb, describes, takes_object

SEED = 2718

# How many distinct English sources each split gets. Train is sized so that, with the
# second readings of "you" and "they", it holds about 40,000 lines.
SPLIT_SOURCES = {"train": 37_000, "valid": 1_000, "test": 1_000}
COMPOSITIONAL_SOURCES = 1_000
FILES = {
    "train": "toy-train.tsv",
    "valid": "toy-valid.tsv",
    "test": "toy-test.tsv",
    "test-compositional": "toy-test-compositional.tsv",
}
# the gold word alignments, line for line beside each .tsv
ALIGNMENT_FILES = {split: name.replace(".tsv", ".align") for split, name in FILES.items()}

# Longest sentences kept, in tokens including the final "." or "?": short enough for a
# small Transformer to learn on a laptop CPU in minutes.
MAX_ENGLISH_TOKENS = 12
MAX_FRENCH_TOKENS = 14

# Combinations that never meet in train/valid/test: ("adj", adjective, noun) means the
# adjective and the noun are never in one sentence; ("verb", verb, noun) likewise.
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("adj", "red", "car"),
    ("adj", "small", "dog"),
    ("adj", "old", "horse"),
    ("adj", "beautiful", "tree"),
    ("adj", "new", "book"),
    ("adj", "happy", "girl"),
    ("adj", "white", "rabbit"),
    ("adj", "italian", "restaurant"),
    ("adj", "green", "bag"),
    ("adj", "young", "teacher"),
    ("adj", "big", "house"),
    ("adj", "black", "bird"),
    ("adj", "pretty", "flower"),
    ("adj", "tired", "doctor"),
    ("adj", "blue", "box"),
    ("adj", "good", "cake"),
    ("adj", "curious", "cat"),
    ("adj", "heavy", "chair"),
    ("adj", "fat", "pig"),
    ("adj", "long", "letter"),
    ("adj", "french", "woman"),
    ("adj", "yellow", "bike"),
    ("adj", "sad", "boy"),
    ("adj", "dirty", "shirt"),
    ("adj", "expensive", "hat"),
    ("adj", "old", "man"),
    ("adj", "empty", "bottle"),
    ("adj", "delicious", "pie"),
    ("adj", "grey", "elephant"),
    ("adj", "kind", "aunt"),
    ("adj", "fast", "train"),
    ("adj", "cold", "kitchen"),
    ("verb", "eat", "apple"),
    ("verb", "wash", "car"),
    ("verb", "read", "newspaper"),
    ("verb", "sell", "horse"),
    ("verb", "watch", "bird"),
    ("verb", "find", "key"),
    ("verb", "help", "woman"),
    ("verb", "draw", "house"),
    ("verb", "visit", "museum"),
    ("verb", "carry", "bag"),
    ("verb", "make", "pie"),
    ("verb", "close", "window"),
)

# Sampling weights. Pronouns "you" and "they" and the determiner "your" are rare because
# each gives two French lines; multi-reference sources should stay a minority.
TEMPLATE_WEIGHTS = {"intransitive": 14, "transitive": 36, "give": 5, "be_adjective": 18,
                    "be_place": 10, "where": 5}
MOOD_WEIGHTS = {"statement": 55, "negative": 25, "question": 20}
PRONOUN_WEIGHTS = {"i": 3, "you": 1, "he": 3, "she": 3, "we": 2, "they": 1}
DETERMINER_WEIGHTS = {"the": 55, "a": 15, "my": 8, "your": 2, "his": 6, "her": 6, "our": 4, "their": 4}
ADJECTIVE_COUNT_WEIGHTS = {0: 50, 1: 40, 2: 10}
VERB_WEIGHTS = {"have": 4, "go to": 4, "talk about": 2, "talk to": 2, "like": 2, "see": 2}
PRONOUN_SUBJECT_PROBABILITY = 0.35
PLURAL_PROBABILITY = 0.3

# A lexicon read in a fixed order: dicts keep insertion order, so these lists do too.
NOUN_LIST: list[Noun] = list(NOUNS.values())
ADJECTIVE_LIST: list[Adjective] = list(ADJECTIVES.values())
VERB_LIST: list[Verb] = list(VERBS.values())

Pair = tuple[str, tuple[str, ...], tuple[str, ...]]  # (English, French translations, their alignments)

# What fits what, worked out once: the sampler asks these questions tens of thousands of times.
FITTING_ADJECTIVES: dict[str, list[Adjective]] = {
    noun.en: [a for a in ADJECTIVE_LIST if describes(a, noun)] for noun in NOUN_LIST
}
OBJECTS: dict[str, list[Noun]] = {verb.key: [n for n in NOUN_LIST if takes_object(verb, n)] for verb in VERB_LIST}


# --------------------------------------------------------------------------------------
# Sampling sentence structures
# --------------------------------------------------------------------------------------


def weighted(rng: random.Random, weights: dict):
    """One key of ``weights``, drawn with probability proportional to its weight."""
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


class PhraseSampler:
    """Draws the parts of a clause: words that fit together, noun phrases, places.

    focus: an entry of HELD_OUT to try to produce. Whenever the focus noun (or verb) is a
    possible choice it is taken half of the time, and the focus adjective is then put on
    it, so sentences with the held-out combination come up quickly.
    """

    def __init__(self, rng: random.Random, focus: tuple[str, str, str] | None = None):
        self.rng = rng
        self.focus = focus

    # -- words -----------------------------------------------------------------------

    def noun(self, candidates: list[Noun]) -> Noun:
        if self.focus and self.rng.random() < 0.5:
            focus_noun = NOUNS[self.focus[2]]
            if focus_noun in candidates:
                return focus_noun
        return self.rng.choice(candidates)

    def verb(self, candidates: list[Verb]) -> Verb:
        if self.focus and self.focus[0] == "verb" and self.rng.random() < 0.5:
            focus_verb = VERBS[self.focus[1]]
            if focus_verb in candidates:
                return focus_verb
        return self.rng.choices(candidates, weights=[VERB_WEIGHTS.get(v.key, 1) for v in candidates])[0]

    def pronoun(self, allowed: tuple[str, ...]) -> str:
        return weighted(self.rng, {p: PRONOUN_WEIGHTS[p] for p in allowed})

    def adjectives(self, noun: Noun, most: int) -> tuple[str, ...]:
        """0-2 adjectives for a noun; two only as one pre-nominal + one colour/nationality."""
        if self.focus and self.focus[0] == "adj" and noun.en == self.focus[2]:
            return (self.focus[1],)
        fitting = FITTING_ADJECTIVES[noun.en]
        count = min(most, weighted(self.rng, ADJECTIVE_COUNT_WEIGHTS))
        pre = [a for a in fitting if a.prenominal]
        # Two adjectives only as "size/age/quality + colour/origin", whose English order
        # (the small black cat) and French order (le petit chat noir) are both fixed.
        post = [a for a in fitting if a.group in ("colour", "nationality")]
        if count == 2 and pre and post:
            return (self.rng.choice(pre).en, self.rng.choice(post).en)
        if count >= 1 and fitting:
            return (self.rng.choice(fitting).en,)
        return ()

    # -- phrases ---------------------------------------------------------------------

    def noun_phrase(self, noun: Noun, determiners: tuple[str, ...] = tuple(DETERMINER_WEIGHTS),
                    plural_ok: bool = True, most_adjectives: int = 2) -> NP:
        if "unowned" in noun.tags:
            determiners = tuple(d for d in determiners if d in ("the", "a")) or ("the",)
        det = weighted(self.rng, {d: DETERMINER_WEIGHTS[d] for d in determiners})
        plural = plural_ok and self.rng.random() < PLURAL_PROBABILITY
        return NP(noun.en, det, plural, self.adjectives(noun, most_adjectives))

    def subject(self, kinds: frozenset[str], pronouns: tuple[str, ...], indefinite_ok: bool = False,
                most_adjectives: int = 2) -> NP | str:
        if "person" in kinds and pronouns and self.rng.random() < PRONOUN_SUBJECT_PROBABILITY:
            return self.pronoun(pronouns)
        noun = self.noun([n for n in NOUN_LIST if n.kind in kinds])
        # "a cat sleeps" is natural, "cats sleep" is generic (les chats dorment): no
        # indefinite plural subjects.
        determiners = tuple(d for d in DETERMINER_WEIGHTS if d != "a" or indefinite_ok)
        np = self.noun_phrase(noun, determiners, most_adjectives=most_adjectives)
        if np.det == "a" and np.plural:
            np = NP(np.noun, np.det, False, np.adjectives)
        return np

    def place(self, subject_kind: str, verb: Verb | None = None, avoid: str = "") -> Place | None:
        """A locative phrase that suits the subject: a person is at the station, a cat
        under the table, a key in the box. Places are singular and mostly definite."""
        if verb is not None and verb.key == "swim":
            options = [("in", "water")]
        else:
            options = {
                "person": [("at", "venue"), ("in", "interior")],
                "animal": [("in", "interior"), ("on", "surface"), ("under", "surface"), ("in", "container")],
                "object": [("on", "surface"), ("under", "surface"), ("in", "container")],
                "vehicle": [("at", "venue")],
            }.get(subject_kind, [])
        if not options:
            return None
        preposition, tag = self.rng.choice(options)
        nouns = [n for n in NOUN_LIST if tag in n.tags and n.en != avoid]
        np = self.noun_phrase(self.noun(nouns), ("the", "my", "your", "his", "her", "our", "their"),
                              plural_ok=False, most_adjectives=1)
        return Place(preposition, np)

    def object(self, verb: Verb, subject: NP | str) -> NP:
        avoid = subject.noun if isinstance(subject, NP) else ""
        noun = self.noun([n for n in OBJECTS[verb.key] if n.en != avoid])
        determiners = tuple(d for d in DETERMINER_WEIGHTS if d != "a" or not verb.definite_object)
        # One goes to the market, hardly to the markets: destinations stay singular.
        np = self.noun_phrase(noun, determiners, plural_ok=verb.key != "go to")
        # "talk about cats" / "talk to cats" are generic in English and take the definite
        # article in French (parler des chats); keep indefinites singular after à/de.
        if np.det == "a" and np.plural and verb.fr_prep in ("à", "de"):
            np = NP(np.noun, np.det, False, np.adjectives)
        return np


class SentenceSampler:
    """Draws random clauses whose words fit together: a template (TEMPLATE_WEIGHTS) and
    a mood, then its parts from a PhraseSampler (``focus``: see PhraseSampler)."""

    def __init__(self, rng: random.Random, focus: tuple[str, str, str] | None = None):
        self.rng = rng
        self.focus = focus
        self.phrases = PhraseSampler(rng, focus)

    def clause(self) -> Clause:
        template = weighted(self.rng, TEMPLATE_WEIGHTS)
        return getattr(self, "_" + template)()

    def _mood(self) -> tuple[str, tuple[str, ...]]:
        """A mood and the pronouns it allows (no questions with "i": do i like ... ?)."""
        mood = weighted(self.rng, MOOD_WEIGHTS)
        pronouns = tuple(p for p in PRONOUN_WEIGHTS if not (mood == "question" and p == "i"))
        return mood, pronouns

    def _intransitive(self) -> Clause:
        mood, pronouns = self._mood()
        verb = self.phrases.verb([v for v in VERB_LIST if v.intransitive])
        subject = self.phrases.subject(verb.subjects, pronouns, indefinite_ok=mood != "negative")
        place = None
        if self.rng.random() < 0.5:
            kind = NOUNS[subject.noun].kind if isinstance(subject, NP) else "person"
            place = self.phrases.place(kind, verb, avoid=subject.noun if isinstance(subject, NP) else "")
        return Clause(subject, verb.key, place=place, mood=mood)

    def _transitive(self) -> Clause:
        mood, pronouns = self._mood()
        verb = self.phrases.verb([v for v in VERB_LIST if v.objects and v.key != "give"])
        subject = self.phrases.subject(verb.subjects, pronouns)
        return Clause(subject, verb.key, obj=self.phrases.object(verb, subject), mood=mood)

    def _give(self) -> Clause:
        mood, pronouns = self._mood()
        verb = VERBS["give"]
        subject = self.phrases.subject(verb.subjects, pronouns, most_adjectives=1)
        obj = self.phrases.object(verb, subject)
        obj = NP(obj.noun, obj.det, obj.plural, obj.adjectives[:1])
        avoid = subject.noun if isinstance(subject, NP) else ""
        recipients = [n for n in NOUN_LIST if n.kind in ("person", "animal") and n.en != avoid]
        definite = ("the", "my", "your", "his", "her", "our", "their")
        recipient = self.phrases.noun_phrase(self.phrases.noun(recipients), definite, most_adjectives=1)
        return Clause(subject, "give", obj=obj, recipient=recipient, mood=mood)

    def _be_adjective(self) -> Clause:
        mood, pronouns = self._mood()
        # A predicate adjective agrees in gender, so only pronouns whose gender is known.
        pronouns = tuple(p for p in pronouns if p in ("he", "she", "they"))
        kinds = frozenset({"person", "animal", "object", "vehicle", "food", "place", "nature"})
        subject = self.phrases.subject(kinds, pronouns, most_adjectives=1)
        noun = NOUNS[subject.noun] if isinstance(subject, NP) else None
        used = {ADJECTIVES[a].group for a in subject.adjectives} if isinstance(subject, NP) else set()
        if (isinstance(subject, NP) and self.focus and self.focus[0] == "adj" and subject.adjectives
                and subject.adjectives[0] == self.focus[1] and ADJECTIVES[self.focus[1]].predicative
                and self.rng.random() < 0.5):
            # Put the held-out adjective in the predicate instead: "the car is red".
            return Clause(NP(subject.noun, subject.det, subject.plural), adjective=self.focus[1], mood=mood)
        fitting = [a for a in ADJECTIVE_LIST
                   if a.predicative and a.group not in used
                   and (describes(a, noun) if noun else "person" in a.applies_to)]
        return Clause(subject, adjective=self.rng.choice(fitting).en, mood=mood)

    def _be_place(self) -> Clause:
        mood, pronouns = self._mood()
        kinds = frozenset({"person", "animal", "object", "vehicle", "food"})
        subject = self.phrases.subject(kinds, pronouns, most_adjectives=1)
        kind = NOUNS[subject.noun].kind if isinstance(subject, NP) else "person"
        place = self.phrases.place("object" if kind == "food" else kind, avoid=getattr(subject, "noun", ""))
        return Clause(subject, place=place, mood=mood)

    def _where(self) -> Clause:
        pronouns = ("you", "he", "she", "we", "they")
        kinds = frozenset({"person", "animal", "object", "vehicle", "food", "place"})
        subject = self.phrases.subject(kinds, pronouns, most_adjectives=1)
        if isinstance(subject, NP) and NOUNS[subject.noun].kind == "place" and subject.plural:
            subject = NP(subject.noun, subject.det, False, subject.adjectives)  # where is the station ?
        return Clause(subject, mood="where")


# --------------------------------------------------------------------------------------
# Held-out combinations
# --------------------------------------------------------------------------------------


def content_words(clause: Clause) -> tuple[set[str], set[str], set[str]]:
    """(nouns, adjectives, verbs) of a clause, as English lemmas."""
    nps = [np for np in (clause.subject, clause.obj, clause.recipient) if isinstance(np, NP)]
    if clause.place is not None:
        nps.append(clause.place.np)
    nouns = {np.noun for np in nps}
    adjectives = {a for np in nps for a in np.adjectives} | ({clause.adjective} if clause.adjective else set())
    verbs = {VERBS[clause.verb].en} if clause.verb != "be" else set()
    return nouns, adjectives, verbs


def held_out_in(clause: Clause) -> list[tuple[str, str, str]]:
    """The held-out combinations whose two words both appear, anywhere, in the clause."""
    nouns, adjectives, verbs = content_words(clause)
    return [(kind, word, noun) for kind, word, noun in HELD_OUT
            if noun in nouns and word in (adjectives if kind == "adj" else verbs)]


def realizes(clause: Clause, held: tuple[str, str, str]) -> bool:
    """Does the clause use the held-out combination as a phrase (red car, eat an apple)?"""
    kind, word, noun = held
    if kind == "verb":
        return clause.obj is not None and VERBS[clause.verb].en == word and clause.obj.noun == noun
    nps = [np for np in (clause.subject, clause.obj, clause.recipient) if isinstance(np, NP)]
    if clause.place is not None:
        nps.append(clause.place.np)
    attributive = any(np.noun == noun and word in np.adjectives for np in nps)
    predicative = isinstance(clause.subject, NP) and clause.subject.noun == noun and clause.adjective == word
    return attributive or predicative


# --------------------------------------------------------------------------------------
# Building the splits
# --------------------------------------------------------------------------------------


def short_enough(pair: Pair) -> bool:
    english, translations, _ = pair
    return (len(english.split()) <= MAX_ENGLISH_TOKENS
            and all(len(french.split()) <= MAX_FRENCH_TOKENS for french in translations))


def sample_main_pool(rng: random.Random, count: int) -> list[Pair]:
    """`count` distinct English sources, none containing a held-out combination."""
    sampler = SentenceSampler(rng)
    pairs: dict[str, Pair] = {}
    while len(pairs) < count:
        clause = sampler.clause()
        if held_out_in(clause):
            continue
        pair = render_aligned(clause)
        if pair[0] not in pairs and short_enough(pair):
            pairs[pair[0]] = pair
    return list(pairs.values())


def vocabulary(pairs: list[Pair]) -> tuple[set[str], set[str]]:
    english = {word for en, _, _ in pairs for word in en.split()}
    french = {word for _, frs, _ in pairs for fr in frs for word in fr.split()}
    return english, french


def sample_compositional(rng: random.Random, count: int, train: list[Pair]) -> list[Pair]:
    """`count` sources that each use a held-out combination, in turn, built only from words
    (English and French tokens) that training has seen."""
    seen_english, seen_french = vocabulary(train)
    pairs: dict[str, Pair] = {}
    samplers = [SentenceSampler(rng, focus=held) for held in HELD_OUT]
    for index in range(count):
        held = HELD_OUT[index % len(HELD_OUT)]
        sampler = samplers[index % len(HELD_OUT)]
        for _attempt in range(100_000):
            clause = sampler.clause()
            if not realizes(clause, held):
                continue
            english, translations, alignments = pair = render_aligned(clause)
            known = (set(english.split()) <= seen_english
                     and all(set(fr.split()) <= seen_french for fr in translations))
            if english not in pairs and known and short_enough(pair):
                pairs[english] = pair
                break
        else:
            raise RuntimeError(f"could not realise held-out combination {held}")
    return list(pairs.values())


def build_corpus(seed: int = SEED) -> dict[str, list[Pair]]:
    """All four splits as lists of (English, French translations, their alignments)."""
    rng = random.Random(seed)
    pool = sample_main_pool(rng, sum(SPLIT_SOURCES.values()))
    rng.shuffle(pool)
    valid_end = SPLIT_SOURCES["valid"]
    test_end = valid_end + SPLIT_SOURCES["test"]
    splits = {"valid": pool[:valid_end], "test": pool[valid_end:test_end], "train": pool[test_end:]}
    splits["test-compositional"] = sample_compositional(rng, COMPOSITIONAL_SOURCES, splits["train"])
    return splits


def write_tsv(path: pathlib.Path, pairs: list[Pair]) -> int:
    """Write one English<TAB>French line per translation; returns the number of lines.
    A pair may come without alignments (long.py's are (English, French translations))."""
    lines = [f"{english}\t{french}\n" for english, translations, *_ in pairs for french in translations]
    with open(path, "w", encoding="utf-8", newline="\n") as file:
        file.writelines(lines)
    return len(lines)


def write_alignments(path: pathlib.Path, pairs: list[Pair]) -> int:
    """Write the gold alignment of each line of write_tsv's file, in the same order."""
    lines = [f"{alignment}\n" for _, _, alignments in pairs for alignment in alignments]
    with open(path, "w", encoding="ascii", newline="\n") as file:
        file.writelines(lines)
    return len(lines)


def write_corpus(out_dir: str | pathlib.Path, seed: int = SEED) -> dict[str, tuple[int, int]]:
    """Generate and write every split; returns {split: (lines, distinct English sources)}."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, pairs in build_corpus(seed).items():
        counts[split] = (write_tsv(out / FILES[split], pairs), len(pairs))
        write_alignments(out / ALIGNMENT_FILES[split], pairs)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data", help="directory to write the .tsv and .align files into")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    args = parser.parse_args(argv)
    counts = write_corpus(args.out, args.seed)
    # Printed as the rows of the table in data/README.md, which must match the files.
    print("| file | pairs | distinct English sources |")
    for split in FILES:
        lines, sources = counts[split]
        print(f"| `{FILES[split]}` | {lines:,} | {sources:,} |")


if __name__ == "__main__":
    main()
