"""The toy corpus: reproducible, well split, and correct English and French.

    python3 -m pytest -q tests/test_corpus.py

Four groups of tests:
1. the committed files in data/ are exactly what the generator writes, in the documented
   format and sizes;
2. the splits are disjoint by English source and the compositional split holds only
   combinations that training never shows together, made of words training does show;
3. the grammar gets hand-checked French right: conjugation tables, noun phrases and whole
   sentences written out here by hand;
4. every French and English line of the corpus passes checks that would catch real errors:
   missing elisions and contractions, ne without pas, article and adjective agreement,
   subject-verb agreement in both languages, a/an.
The expected forms in this file are written by hand, not computed with the code under test.
"""

from __future__ import annotations

import pathlib
import random
import re
from collections import Counter

import pytest

from minitransformer.corpus import generate, grammar, lexicon
from minitransformer.corpus.grammar import NP, Clause, GrammarError, Place, conjugate, noun_phrase, sentence

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / "data"
SPLITS = ("train", "valid", "test", "test-compositional")

# Words with an aspirated h: they take le/la/de/que unelided (le hibou, du hérisson).
ASPIRATED = {"hibou", "hiboux", "hérisson", "hérissons"}
VOWEL_START = re.compile(r"^[aeiouàâäéèêëîïôöùûüœæ]|^h(?!ibou|érisson)")


def read_split(split: str) -> list[tuple[str, str]]:
    text = (DATA / generate.FILES[split]).read_text(encoding="utf-8")
    return [tuple(line.split("\t")) for line in text.splitlines()]


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[tuple[str, str]]]:
    return {split: read_split(split) for split in SPLITS}


@pytest.fixture(scope="module")
def all_french(corpus) -> list[str]:
    return [fr for split in SPLITS for _, fr in corpus[split]]


@pytest.fixture(scope="module")
def all_pairs(corpus) -> list[tuple[str, str]]:
    return [pair for split in SPLITS for pair in corpus[split]]


def sources(pairs) -> set[str]:
    return {en for en, _ in pairs}


# ======================================================================================
# 1. Reproducible files in the documented format and sizes
# ======================================================================================


def test_generator_rewrites_the_committed_files_byte_for_byte(tmp_path):
    generate.main(["--out", str(tmp_path)])
    for name in [*generate.FILES.values(), *generate.ALIGNMENT_FILES.values()]:
        fresh = (tmp_path / name).read_bytes()
        committed = (DATA / name).read_bytes()
        assert fresh == committed, (
            f"data/{name} is not what the generator writes now; regenerate with "
            "`python -m minitransformer.corpus.generate --out data/`"
        )


def test_same_seed_same_sentences_other_seed_other_sentences():
    first = generate.sample_main_pool(random.Random(5), 300)
    again = generate.sample_main_pool(random.Random(5), 300)
    other = generate.sample_main_pool(random.Random(6), 300)
    assert first == again, "sampling is not deterministic for a fixed seed"
    assert first != other, "the seed has no effect"


def test_file_format():
    for split, name in generate.FILES.items():
        raw = (DATA / name).read_bytes()
        text = raw.decode("utf-8")  # raises if not UTF-8
        assert text.endswith("\n") and "\r" not in text, f"{name}: lines must end in a single \\n"
        for number, line in enumerate(text.splitlines(), 1):
            columns = line.split("\t")
            assert len(columns) == 2, f"{name}:{number}: expected English<TAB>French, got {line!r}"
            for side in columns:
                assert side == side.strip() and "  " not in side and side, f"{name}:{number}: spacing in {line!r}"
                assert side == side.lower(), f"{name}:{number}: not lower-case: {line!r}"
                assert side.endswith((" .", " ?")), f"{name}:{number}: punctuation not split off: {line!r}"
            english, french = columns
            assert english[-1] == french[-1], f"{name}:{number}: statement/question mismatch: {line!r}"


def test_counts_are_in_the_documented_ranges(corpus):
    train, valid, test, compositional = (corpus[s] for s in SPLITS)
    assert 38_000 <= len(train) <= 42_000, f"train has {len(train)} pairs"
    for split in ("valid", "test", "test-compositional"):
        assert len(sources(corpus[split])) == 1_000, f"{split} has {len(sources(corpus[split]))} sources"
        assert 1_000 <= len(corpus[split]) <= 1_200, f"{split} has {len(corpus[split])} pairs"


def test_readme_states_the_real_counts(corpus):
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for split in SPLITS:
        pairs = corpus[split]
        row = f"| `{generate.FILES[split]}` | {len(pairs):,} | {len(sources(pairs)):,} |"
        assert row in readme, f"data/README.md should contain the row {row}"


def test_readme_examples_are_real(corpus):
    """Every example in data/README.md is checked below or is a line of the corpus."""
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    checked = {english: tuple(french) for _, english, french in SENTENCES}
    checked.update({english: (french,) for _, (english, french) in NOUN_PHRASES})
    table = readme.split("## What the grammar covers")[1].split("**Left out")[0]
    rows = re.findall(r"^\| [^|]+ \| ([a-z][^|]*?) \| ([^|]+?) \|$", table, flags=re.MULTILINE)
    assert len(rows) >= 20, "the phenomena table of data/README.md was not found"
    for english, french in rows:
        assert checked.get(english) == tuple(french.split(" / ")), f"README example not checked: {english}"
    lines = set(corpus["test-compositional"])
    for english, french in re.findall(r"`([^`]+ [.?])` →\s+`([^`]+)`", readme):
        assert (english, french) in lines, f"README example not in the compositional split: {english}"


def test_sentence_lengths(all_pairs):
    for english, french in all_pairs:
        assert 3 <= len(english.split()) <= 12, f"English length {len(english.split())}: {english}"
        assert 2 <= len(french.split()) <= 14, f"French length {len(french.split())}: {french}"


def test_multiple_references_are_a_minority_and_adjacent(corpus):
    for split in SPLITS:
        english = [en for en, _ in corpus[split]]
        counts = Counter(english)
        shared = sum(1 for n in counts.values() if n > 1)
        assert shared / len(counts) < 0.2, f"{split}: {shared} of {len(counts)} sources have several references"
        assert max(counts.values()) <= 4, f"{split}: a source has {max(counts.values())} references"
        runs = [en for i, en in enumerate(english) if i == 0 or english[i - 1] != en]
        assert len(runs) == len(counts), f"{split}: the lines of one source are not next to each other"
        assert len(set(corpus[split])) == len(corpus[split]), f"{split}: a pair is repeated"


# ======================================================================================
# 2. Splits and the compositional hold-out
# ======================================================================================


def test_splits_are_disjoint_by_english_source(corpus):
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            common = sources(corpus[first]) & sources(corpus[second])
            assert not common, f"{first} and {second} share sources, e.g. {sorted(common)[:3]}"


def english_lemmas() -> dict[str, tuple[str, str]]:
    """English token -> (part of speech, lemma), for spotting held-out words in a sentence."""
    lemmas = {}
    for noun in lexicon.NOUNS.values():
        lemmas[noun.en] = lemmas[noun.en_plural] = ("noun", noun.en)
    for adjective in lexicon.ADJECTIVES.values():
        lemmas[adjective.en] = ("adj", adjective.en)
    for verb in lexicon.VERBS.values():
        lemmas[verb.en] = lemmas[grammar.english_third_person(verb.en)] = ("verb", verb.en)
    return lemmas


def held_out_pairs_in(english: str, lemmas) -> list[tuple[str, str, str]]:
    words = {lemmas[token] for token in english.split() if token in lemmas}
    return [held for held in generate.HELD_OUT if (held[0], held[1]) in words and ("noun", held[2]) in words]


def test_held_out_combinations_never_meet_in_train_valid_test(corpus):
    lemmas = english_lemmas()
    for split in ("train", "valid", "test"):
        for english in sources(corpus[split]):
            found = held_out_pairs_in(english, lemmas)
            assert not found, f"{split}: {english!r} contains the held-out combination {found}"


def test_every_compositional_source_uses_a_held_out_combination(corpus):
    lemmas = english_lemmas()
    used = Counter()
    for english in sources(corpus["test-compositional"]):
        found = held_out_pairs_in(english, lemmas)
        assert found, f"{english!r} in the compositional split has no held-out combination"
        used.update(found)
    missing = [held for held in generate.HELD_OUT if used[held] < 10]
    assert not missing, f"held-out combinations tested fewer than 10 times: {missing}"


def test_compositional_words_all_appear_in_training(corpus):
    train_english = {w for en, _ in corpus["train"] for w in en.split()}
    train_french = {w for _, fr in corpus["train"] for w in fr.split()}
    for english, french in corpus["test-compositional"]:
        unseen = [w for w in english.split() if w not in train_english]
        unseen += [w for w in french.split() if w not in train_french]
        assert not unseen, f"{english!r} / {french!r}: words never seen in training: {unseen}"


def test_held_out_words_are_common_in_training(corpus):
    counts = Counter(w for en, _ in corpus["train"] for w in en.split())
    lemmas = english_lemmas()
    by_lemma = Counter()
    for token, n in counts.items():
        if token in lemmas:
            by_lemma[lemmas[token][1]] += n
    for _, word, noun in generate.HELD_OUT:
        for lemma in (word, noun):
            assert by_lemma[lemma] >= 20, f"{lemma!r} is in only {by_lemma[lemma]} training sentences"


# ======================================================================================
# 3. The grammar against hand-written French
# ======================================================================================

CONJUGATIONS = {
    "être": ["suis", "es", "est", "sommes", "êtes", "sont"],
    "avoir": ["ai", "as", "a", "avons", "avez", "ont"],
    "aller": ["vais", "vas", "va", "allons", "allez", "vont"],
    "faire": ["fais", "fais", "fait", "faisons", "faites", "font"],
    "parler": ["parle", "parles", "parle", "parlons", "parlez", "parlent"],
    "manger": ["mange", "manges", "mange", "mangeons", "mangez", "mangent"],
    "finir": ["finis", "finis", "finit", "finissons", "finissez", "finissent"],
    "vendre": ["vends", "vends", "vend", "vendons", "vendez", "vendent"],
    "dormir": ["dors", "dors", "dort", "dormons", "dormez", "dorment"],
    "voir": ["vois", "vois", "voit", "voyons", "voyez", "voient"],
    "écrire": ["écris", "écris", "écrit", "écrivons", "écrivez", "écrivent"],
}


@pytest.mark.parametrize("infinitive", CONJUGATIONS)
def test_present_tense_tables(infinitive):
    got = [conjugate(infinitive, person) for person in range(6)]
    assert got == CONJUGATIONS[infinitive], f"{infinitive}: got {got}, expected {CONJUGATIONS[infinitive]}"


def test_spelling_rules_and_refusals_in_conjugation():
    assert conjugate("nager", 3) == "nageons" and conjugate("voyager", 3) == "voyageons"
    assert conjugate("commencer", 3) == "commençons"
    for stem_changing in ("acheter", "appeler", "préférer", "essayer", "lever"):
        with pytest.raises(GrammarError):
            conjugate(stem_changing, 0)
    for regular in ("fermer", "chercher", "détester", "étudier"):
        conjugate(regular, 0)  # must not be mistaken for a stem-changing verb
    for verb in lexicon.VERBS.values():
        for person in range(6):
            conjugate(verb.fr, person)  # every verb in the lexicon conjugates


def test_inversion_inserts_euphonic_t():
    assert grammar.invert("aime", "il") == "aime-t-il"
    assert grammar.invert("a", "elle") == "a-t-elle"
    assert grammar.invert("va", "il") == "va-t-il"
    assert grammar.invert("est", "il") == "est-il"
    assert grammar.invert("vend", "elle") == "vend-elle"
    assert grammar.invert("aimes", "tu") == "aimes-tu"
    assert grammar.invert("ont", "ils") == "ont-ils"


NOUN_PHRASES = [
    # (noun, det, plural, adjectives) -> (English, French)
    (("cat", "the", False, ("black",)), ("the black cat", "le chat noir")),
    (("cat", "the", False, ("small",)), ("the small cat", "le petit chat")),
    (("cat", "the", True, ("small", "black")), ("the small black cats", "les petits chats noirs")),
    (("car", "the", False, ("black",)), ("the black car", "la voiture noire")),
    (("car", "the", True, ("black",)), ("the black cars", "les voitures noires")),
    (("car", "a", False, ("red",)), ("a red car", "une voiture rouge")),
    (("car", "a", True, ("white",)), ("white cars", "des voitures blanches")),
    (("cat", "a", True, ("small",)), ("small cats", "de petits chats")),
    (("tree", "a", False, ("beautiful",)), ("a beautiful tree", "un bel arbre")),
    (("tree", "a", True, ("beautiful",)), ("beautiful trees", "de beaux arbres")),
    (("man", "the", False, ("old",)), ("the old man", "le vieil homme")),
    (("man", "the", True, ("old",)), ("the old men", "les vieux hommes")),
    (("school", "the", False, ("old",)), ("the old school", "la vieille école")),
    (("hotel", "a", False, ("new",)), ("a new hotel", "un nouvel hôtel")),
    (("owl", "the", False, ("beautiful",)), ("the beautiful owl", "le beau hibou")),
    (("owl", "the", False, ()), ("the owl", "le hibou")),
    (("man", "the", False, ()), ("the man", "l'homme")),
    (("tree", "the", False, ()), ("the tree", "l'arbre")),
    (("apple", "a", False, ()), ("an apple", "une pomme")),
    (("cat", "my", False, ()), ("my cat", "mon chat")),
    (("car", "her", False, ()), ("her car", "sa voiture")),
    (("car", "his", False, ()), ("his car", "sa voiture")),
    (("dog", "their", True, ()), ("their dogs", "leurs chiens")),
    (("school", "my", False, ()), ("my school", "mon école")),
    (("school", "my", False, ("new",)), ("my new school", "ma nouvelle école")),
    (("horse", "our", True, ()), ("our horses", "nos chevaux")),
    (("newspaper", "the", True, ()), ("the newspapers", "les journaux")),
    (("mouse", "the", True, ("grey",)), ("the grey mice", "les souris grises")),
    (("girl", "the", False, ("happy",)), ("the happy girl", "la fille heureuse")),
    (("dog", "the", True, ("kind",)), ("the kind dogs", "les chiens gentils")),
    (("dress", "the", True, ("purple",)), ("the purple dresses", "les robes violettes")),
    (("shoe", "the", True, ("brown",)), ("the brown shoes", "les chaussures marron")),
    (("woman", "a", False, ("italian",)), ("an italian woman", "une femme italienne")),
    (("cake", "the", False, ("good",)), ("the good cake", "le bon gâteau")),
    (("pie", "a", False, ("good",)), ("a good pie", "une bonne tarte")),
    (("letter", "a", False, ("long",)), ("a long letter", "une longue lettre")),
]


@pytest.mark.parametrize("args, expected", NOUN_PHRASES)
def test_noun_phrases(args, expected):
    noun, det, plural, adjectives = args
    got = noun_phrase(noun, det, plural, adjectives)
    assert got == expected, f"noun_phrase{args}: got {got}, expected {expected}"


def test_your_follows_the_reading_of_you():
    assert noun_phrase("car", "your", you="tu")[1] == "ta voiture"
    assert noun_phrase("car", "your", you="vous")[1] == "votre voiture"
    assert noun_phrase("car", "your", True, you="vous")[1] == "vos voitures"


SENTENCES = [
    (Clause(NP("cat", adjectives=("black",)), "sleep"), "the black cat sleeps .", ["le chat noir dort ."]),
    (Clause("he", "go to", obj=NP("market")), "he goes to the market .", ["il va au marché ."]),
    (Clause("she", "go to", obj=NP("school")), "she goes to the school .", ["elle va à l'école ."]),
    (Clause("we", "go to", obj=NP("beach")), "we go to the beach .", ["nous allons à la plage ."]),
    (Clause("she", "talk about", obj=NP("book")), "she talks about the book .", ["elle parle du livre ."]),
    (Clause("he", "talk about", obj=NP("tree", plural=True)), "he talks about the trees .",
     ["il parle des arbres ."]),
    (Clause("he", "talk about", obj=NP("tree", "a")), "he talks about a tree .", ["il parle d'un arbre ."]),
    (Clause("i", "talk to", obj=NP("child", plural=True)), "i talk to the children .",
     ["je parle aux enfants ."]),
    (Clause("i", "like", obj=NP("cat", "my")), "i like my cat .", ["j'aime mon chat ."]),
    (Clause("i", "like", obj=NP("cat"), mood="negative"), "i do not like the cat .",
     ["je n'aime pas le chat ."]),
    (Clause("he", "have", obj=NP("dog", "a"), mood="negative"), "he does not have a dog .",
     ["il n'a pas de chien ."]),
    (Clause("she", "have", obj=NP("apple", "a", True), mood="negative"), "she does not have apples .",
     ["elle n'a pas de pommes ."]),
    (Clause("she", "have", obj=NP("orange", "a"), mood="negative"), "she does not have an orange .",
     ["elle n'a pas d'orange ."]),
    (Clause("they", "play with", obj=NP("ball", "a"), mood="negative"), "they do not play with a ball .",
     ["ils ne jouent pas avec un ballon .", "elles ne jouent pas avec un ballon ."]),
    (Clause(NP("car", "her"), adjective="red", mood="negative"), "her car is not red .",
     ["sa voiture n'est pas rouge ."]),
    (Clause(NP("car", plural=True), adjective="white"), "the cars are white .",
     ["les voitures sont blanches ."]),
    (Clause("she", adjective="happy"), "she is happy .", ["elle est heureuse ."]),
    (Clause(NP("cat"), adjective="black", mood="question"), "is the cat black ?",
     ["est-ce que le chat est noir ?"]),
    (Clause("he", adjective="tired", mood="question"), "is he tired ?", ["est-il fatigué ?"]),
    (Clause("they", adjective="tired", mood="question"), "are they tired ?",
     ["sont-ils fatigués ?", "sont-elles fatiguées ?"]),
    (Clause("you", "like", obj=NP("cat"), mood="question"), "do you like the cat ?",
     ["aimes-tu le chat ?", "aimez-vous le chat ?"]),
    (Clause("he", "like", obj=NP("cat"), mood="question"), "does he like the cat ?", ["aime-t-il le chat ?"]),
    (Clause("she", "have", obj=NP("dog", "a"), mood="question"), "does she have a dog ?",
     ["a-t-elle un chien ?"]),
    (Clause("he", "go to", obj=NP("market"), mood="question"), "does he go to the market ?",
     ["va-t-il au marché ?"]),
    (Clause("he", "sell", obj=NP("car"), mood="question"), "does he sell the car ?", ["vend-il la voiture ?"]),
    (Clause(NP("girl"), "eat", obj=NP("apple"), mood="question"), "does the girl eat the apple ?",
     ["est-ce que la fille mange la pomme ?"]),
    (Clause(NP("dog", "a"), "sleep", place=Place("in", NP("garden")), mood="question"),
     "does a dog sleep in the garden ?", ["est-ce qu'un chien dort dans le jardin ?"]),
    (Clause(NP("dog"), mood="where"), "where is the dog ?", ["où est le chien ?"]),
    (Clause(NP("key", "my", True), mood="where"), "where are my keys ?", ["où sont mes clés ?"]),
    (Clause("you", mood="where"), "where are you ?", ["où es-tu ?", "où êtes-vous ?"]),
    (Clause("we", "eat"), "we eat .", ["nous mangeons ."]),
    (Clause("i", "have", obj=NP("car", "a")), "i have a car .", ["j'ai une voiture ."]),
    (Clause("i", place=Place("at", NP("station"))), "i am at the station .", ["je suis à la gare ."]),
    (Clause("they", "make", obj=NP("cake", "a")), "they make a cake .",
     ["ils font un gâteau .", "elles font un gâteau ."]),
    (Clause("you", "make", obj=NP("pie", "your")), "you make your pie .",
     ["tu fais ta tarte .", "vous faites votre tarte ."]),
    (Clause(NP("cat"), place=Place("under", NP("table"))), "the cat is under the table .",
     ["le chat est sous la table ."]),
    (Clause(NP("girl"), "give", obj=NP("ball"), recipient=NP("dog")), "the girl gives the ball to the dog .",
     ["la fille donne le ballon au chien ."]),
    (Clause(NP("boy"), "give", obj=NP("flower", "a"), recipient=NP("uncle", "his"), mood="negative"),
     "the boy does not give a flower to his uncle .", ["le garçon ne donne pas de fleur à son oncle ."]),
    (Clause("he", "listen to", obj=NP("radio")), "he listens to the radio .", ["il écoute la radio ."]),
    (Clause("she", "look for", obj=NP("key", "her", True)), "she looks for her keys .",
     ["elle cherche ses clés ."]),
    (Clause("i", "help", obj=NP("owl"), mood="negative"), "i do not help the owl .",
     ["je n'aide pas le hibou ."]),
    (Clause(NP("man", "a", adjectives=("old",)), "arrive", place=Place("at", NP("hotel", adjectives=("old",)))),
     "an old man arrives at the old hotel .", ["un vieil homme arrive au vieil hôtel ."]),
    (Clause(NP("child", plural=True), "finish", obj=NP("cake")), "the children finish the cake .",
     ["les enfants finissent le gâteau ."]),
    (Clause("he", "watch", obj=NP("bus", "a", True)), "he watches buses .", ["il regarde des bus ."]),
]


@pytest.mark.parametrize("clause, english, french", SENTENCES, ids=[s[1] for s in SENTENCES])
def test_sentences(clause, english, french):
    got = grammar.render(clause)
    assert got == (english, tuple(french)), f"got {got}, expected {(english, tuple(french))}"


def test_sentence_helper_is_render():
    assert sentence("he", "go to", obj=NP("market")) == ("he goes to the market .", ("il va au marché .",))


def test_grammar_refuses_what_it_cannot_say_correctly():
    with pytest.raises(GrammarError):
        grammar.render(Clause("i", adjective="happy"))  # je suis content or contente?
    with pytest.raises(GrammarError):
        grammar.render(Clause("i", "like", obj=NP("cat"), mood="question"))
    with pytest.raises(GrammarError):
        grammar.render(Clause(NP("car"), adjective="new"))  # la voiture est neuve, not nouvelle
    with pytest.raises(GrammarError):
        grammar.render(Clause(NP("cat", adjectives=("small", "old"))))


def test_lexicon_words_have_one_part_of_speech_and_regular_forms():
    seen: dict[str, str] = {}
    parts = [("noun", w) for n in lexicon.NOUNS.values() for w in (n.en, n.en_plural)]
    parts += [("adjective", a.en) for a in lexicon.ADJECTIVES.values()]
    parts += [("verb", w) for v in lexicon.VERBS.values() for w in (v.en, grammar.english_third_person(v.en))]
    for part, word in parts:
        assert seen.setdefault(word, part) == part, f"{word!r} is both a {seen[word]} and a {part}"
    assert lexicon.NOUNS["horse"].fr_plural == "chevaux" and lexicon.NOUNS["owl"].fr_plural == "hiboux"
    assert lexicon.NOUNS["mouse"].fr_plural == "souris" and lexicon.NOUNS["game"].fr_plural == "jeux"
    assert lexicon.NOUNS["city"].en_plural == "cities" and lexicon.NOUNS["box"].en_plural == "boxes"
    assert grammar.english_third_person("watch") == "watches"
    assert grammar.english_third_person("carry") == "carries"
    assert grammar.english_third_person("play") == "plays"
    assert grammar.english_third_person("go") == "goes"
    assert grammar.english_third_person("have") == "has"
    assert len(lexicon.NOUNS) + len(lexicon.ADJECTIVES) + len(lexicon.VERBS) >= 250
    for noun in lexicon.NOUNS.values():
        if noun.fr.startswith("h"):
            aspirated = noun.fr in ASPIRATED
            assert aspirated == ("aspirated" in noun.tags), f"{noun.fr}: aspirated h not marked as in the test"


# ======================================================================================
# 4. Checks over every line of the corpus
# ======================================================================================


def find_all(pattern: str, lines: list[str]) -> list[str]:
    regex = re.compile(pattern)
    return [line for line in lines if regex.search(line)]


def test_french_contractions(all_french):
    bad = find_all(r"(^| )(à le|à les|de le|de les|de des|à l' )( |$)", all_french)
    assert not bad, f"uncontracted article (au/aux/du/des): {bad[:5]}"


def test_french_elisions(all_french):
    missing = []
    for line in all_french:
        words = line.split()
        for word, following in zip(words, words[1:]):
            if word in ("le", "la", "je", "ne", "de", "que", "ma", "ta", "sa", "du", "au") \
                    and VOWEL_START.search(following) and following not in ASPIRATED:
                missing.append(line)
    assert not missing, f"a missing elision (l', j', n', d', qu', mon, de l', à l'): {missing[:5]}"

    wrong = []
    for line in all_french:
        for elided, following in re.findall(r"(?:^| )(l|d|j|n|qu)'(\S+)", line):
            if not VOWEL_START.search(following):
                wrong.append(line)
    assert not wrong, f"an elision before a consonant: {wrong[:5]}"


def test_french_bel_vieil_nouvel(all_french):
    wrong = find_all(r"(^| )(bel|vieil|nouvel) [^aeiouéèêâîôœh]", all_french)
    assert not wrong, f"bel/vieil/nouvel before a consonant: {wrong[:5]}"
    wrong = [line for line in find_all(r"(^| )(beau|nouveau) ", all_french)
             if re.search(r"(^| )(beau|nouveau) ([aeiouéèêâîôœ]|h(?!ibou|érisson))", line)]
    wrong += find_all(r"(^| )(le|un|mon|ton|son|notre|votre|leur|au|du|de) vieux "
                      r"([aeiouéèêâîôœ]|h(?!ibou|érisson))\S*[^sx] ", all_french)
    assert not wrong, f"beau/vieux/nouveau before a singular vowel noun (should be bel/vieil/nouvel): {wrong[:5]}"


def test_french_indefinite_article_becomes_de(all_french):
    # After a negation a direct object's un/une/des becomes de (je n'ai pas de chat), and
    # des becomes de before a pre-nominal adjective (de petits chats). A "des" there can only
    # be de + les after parler (il parle des petits chats).
    wrong = find_all(r" pas (un|une) ", all_french)
    wrong += [line for line in find_all(r" pas des ", all_french) if not re.search(r" parl\S* pas des ", line)]
    prenominal_plurals = "|".join(form for ms in PRENOMINAL for form in ADJECTIVE_FORMS[ms][2:])
    wrong += [line for line in find_all(rf"(^| )des ({prenominal_plurals}) ", all_french)
              if not re.search(rf"(^| )parl\S*( pas)? des ({prenominal_plurals}) ", line)]
    assert not wrong, f"un/une/des where French needs de: {wrong[:5]}"


def test_french_negation_is_ne_pas(all_pairs):
    for english, french in all_pairs:
        words = french.split()
        for i, word in enumerate(words):
            if word == "ne" or word.startswith("n'"):
                assert "pas" in words[i + 1:], f"ne without pas: {french}"
        negative_en = "not" in english.split()
        negative_fr = "pas" in words
        assert negative_en == negative_fr, f"negation in one language only: {english} / {french}"
        assert words.count("pas") <= 1


# French subject pronouns and the endings their present-tense verb can have. Written from
# the conjugation rules, not from the code: je aime -> j'aime is covered by the elision test.
PRONOUN_ENDINGS = {
    "je": ("e", "s", "ai"),  # je parle, je finis, je vais
    "j'": ("e", "s", "ai"),
    "tu": ("es", "s"),  # tu parles, tu vas, tu es
    "il": ("e", "t", "a", "d"),  # il parle, il fait, il va, il vend
    "elle": ("e", "t", "a", "d"),
    "nous": ("ons", "sommes"),
    "vous": ("ez", "êtes", "faites"),
    "ils": ("ent", "ont"),  # ils parlent, ils ont, ils vont, ils font, ils sont
    "elles": ("ent", "ont"),
}


def test_french_pronoun_verb_agreement(all_french):
    for line in all_french:
        words = line.split()
        for i, word in enumerate(words[:-1]):
            pronoun = "j'" if word.startswith("j'") else word
            if pronoun not in PRONOUN_ENDINGS or (i > 0 and pronoun in ("il", "elle", "ils", "elles")):
                continue
            verb = word[2:] if pronoun == "j'" else words[i + 1]
            if verb == "ne":  # je ne parle pas
                verb = words[i + 2]
            elif verb.startswith("n'"):  # je n'aime pas
                verb = verb[2:]
            assert verb.endswith(PRONOUN_ENDINGS[pronoun]), f"{pronoun} + {verb}: {line}"
        for inverted in re.findall(r"\S+-(?:t-)?(?:tu|il|elle|nous|vous|ils|elles)\b", line):
            verb, pronoun = re.match(r"(\S+?)-(?:t-)?(\w+)$", inverted).groups()
            assert verb.endswith(PRONOUN_ENDINGS[pronoun]), f"inverted {pronoun} + {verb}: {line}"
            if pronoun in ("il", "elle"):
                assert ("-t-" in inverted) == (verb[-1] in "ae"), f"euphonic -t- wrong in {inverted}: {line}"


def french_noun_forms() -> dict[str, tuple[str, bool | None]]:
    """French noun form -> (gender, plural); plural is None for la souris / les souris."""
    forms = {}
    for noun in lexicon.NOUNS.values():
        if noun.fr_plural == noun.fr:
            forms[noun.fr] = (noun.gender, None)
        else:
            forms[noun.fr] = (noun.gender, False)
            forms[noun.fr_plural] = (noun.gender, True)
    return forms


# Determiners and what they demand of the next word when it is a noun.
DETERMINER_AGREEMENT = {
    "le": ("m", False), "au": ("m", False), "du": ("m", False), "un": ("m", False),
    "la": ("f", False), "une": ("f", False), "ma": ("f", False), "ta": ("f", False), "sa": ("f", False),
    "les": (None, True), "aux": (None, True), "des": (None, True), "mes": (None, True),
    "tes": (None, True), "ses": (None, True), "nos": (None, True), "vos": (None, True), "leurs": (None, True),
    "notre": (None, False), "votre": (None, False), "leur": (None, False),
}

# Adjective forms written out by hand: (masculine singular, feminine singular, masculine
# plural, feminine plural).
ADJECTIVE_FORMS = {
    "noir": ("noir", "noire", "noirs", "noires"),
    "blanc": ("blanc", "blanche", "blancs", "blanches"),
    "rouge": ("rouge", "rouge", "rouges", "rouges"),
    "gris": ("gris", "grise", "gris", "grises"),
    "violet": ("violet", "violette", "violets", "violettes"),
    "heureux": ("heureux", "heureuse", "heureux", "heureuses"),
    "gentil": ("gentil", "gentille", "gentils", "gentilles"),
    "italien": ("italien", "italienne", "italiens", "italiennes"),
    "français": ("français", "française", "français", "françaises"),
    "cher": ("cher", "chère", "chers", "chères"),
    "léger": ("léger", "légère", "légers", "légères"),
    "doux": ("doux", "douce", "doux", "douces"),
    "petit": ("petit", "petite", "petits", "petites"),
    "grand": ("grand", "grande", "grands", "grandes"),
    "bon": ("bon", "bonne", "bons", "bonnes"),
    "gros": ("gros", "grosse", "gros", "grosses"),
    "long": ("long", "longue", "longs", "longues"),
    "beau": ("beau", "belle", "beaux", "belles"),
    "vieux": ("vieux", "vieille", "vieux", "vieilles"),
    "nouveau": ("nouveau", "nouvelle", "nouveaux", "nouvelles"),
}
PRENOMINAL = {"petit", "grand", "bon", "gros", "long", "beau", "vieux", "nouveau"}


def agreeing_forms(ms: str, gender: str, plural: bool | None) -> set[str]:
    """The forms of adjective `ms` that agree with a noun (either number if it is unknown)."""
    numbers = (False, True) if plural is None else (plural,)
    return {ADJECTIVE_FORMS[ms][(2 if p else 0) + (1 if gender == "f" else 0)] for p in numbers}


def test_french_article_and_adjective_agreement(all_french):
    nouns = french_noun_forms()
    # every form of a hand-listed adjective -> its masculine singular
    adjective_of = {form: ms for ms, forms in ADJECTIVE_FORMS.items() for form in forms}
    adjective_of.update({"bel": "beau", "vieil": "vieux", "nouvel": "nouveau"})
    checked = Counter()
    for line in all_french:
        words = line.split()
        for i, word in enumerate(words):
            bare = word.split("'")[-1]  # l'arbre -> arbre
            if bare not in nouns:
                continue
            gender, plural = nouns[bare]
            # determiner right before the noun, or before its pre-nominal adjective
            before = words[i - 1] if i > 0 else ""
            if before in adjective_of and adjective_of[before] in PRENOMINAL:
                ms = adjective_of[before]
                allowed = agreeing_forms(ms, gender, plural)
                if plural is not True and gender == "m":
                    allowed |= {"bel", "vieil", "nouvel"} & {before}
                assert before in allowed, f"{before} {bare}: pre-nominal adjective does not agree: {line}"
                checked["pre-nominal"] += 1
                before = words[i - 2] if i > 1 else ""
            if before in DETERMINER_AGREEMENT and bare == word:
                need_gender, need_plural = DETERMINER_AGREEMENT[before]
                assert plural in (None, need_plural), f"{before} {word}: number disagreement: {line}"
                assert need_gender in (None, gender), f"{before} {word}: gender disagreement: {line}"
                checked["determiner"] += 1
            if word.startswith(("l'", "d'un", "qu'un")) or before in ("mon", "ton", "son"):
                assert not plural, f"singular determiner before a plural noun: {line}"
            # post-nominal adjective right after the noun
            after = words[i + 1] if i + 1 < len(words) else ""
            if after in adjective_of:
                ms = adjective_of[after]
                assert ms not in PRENOMINAL, f"{bare} {after}: {ms} belongs before the noun: {line}"
                assert after in agreeing_forms(ms, gender, plural), f"{bare} {after}: no agreement: {line}"
                checked["post-nominal"] += 1
    assert min(checked.values()) > 500, f"too few phrases were checked: {checked}"


def test_french_predicate_adjectives_agree(all_pairs):
    nouns = french_noun_forms()
    adjective_of = {form: ms for ms, forms in ADJECTIVE_FORMS.items() for form in forms}
    checked = 0
    for english, french in all_pairs:
        match = re.match(r"^(?:est-ce que )?(?:le|la|les|mon|ma|mes|son|sa|ses|notre|nos|leur|leurs) (\S+)"
                         r"(?: \S+)? (?:est|sont|n'est pas|ne sont pas) (\S+) [.?]$", french)
        if match and match.group(1) in nouns and match.group(2) in adjective_of:
            gender, plural = nouns[match.group(1)]
            assert match.group(2) in agreeing_forms(adjective_of[match.group(2)], gender, plural), french
            checked += 1
        match = re.match(r"^(?:(il|elle|ils|elles) (?:est|sont|n'est pas|ne sont pas)|(?:est|sont)-(il|elle|ils|elles))"
                         r" (\S+) [.?]$", french)
        if match and match.group(3) in adjective_of:
            pronoun = match.group(1) or match.group(2)
            gender = "f" if pronoun.startswith("elle") else "m"
            assert match.group(3) in agreeing_forms(adjective_of[match.group(3)], gender,
                                                    pronoun.endswith("s")), french
            checked += 1
    assert checked > 300, f"only {checked} predicate adjectives checked"


def english_forms():
    third_person = {grammar.english_third_person(v.en) for v in lexicon.VERBS.values()} | {"is", "does"}
    base = {v.en for v in lexicon.VERBS.values()} | {"are", "do", "am"}
    singular = {n.en for n in lexicon.NOUNS.values()}
    plural = {n.en_plural for n in lexicon.NOUNS.values()}
    return third_person, base, singular, plural


def test_english_subject_verb_agreement(all_pairs):
    third_person, base, singular, plural = english_forms()
    for english, _ in sources_of(all_pairs):
        words = english.split()
        if words[0] in ("he", "she"):
            assert words[1] in third_person, f"he/she + {words[1]}: {english}"
        elif words[0] in ("i", "you", "we", "they"):
            assert words[1] in base and words[1] not in third_person, f"{words[0]} + {words[1]}: {english}"
            if words[1] in ("am", "are"):
                assert (words[1] == "am") == (words[0] == "i"), f"{words[0]} + {words[1]}: {english}"
        elif words[0] in ("does", "is", "do", "are") or words[:2] in (["where", "is"], ["where", "are"]):
            auxiliary, rest = (words[1], words[2:]) if words[0] == "where" else (words[0], words[1:])
            singular_subject = auxiliary in ("does", "is")
            if rest[0] in ("he", "she", "you", "we", "they"):
                assert singular_subject == (rest[0] in ("he", "she")), f"{auxiliary} {rest[0]}: {english}"
            else:
                head = next(w for w in rest if w in singular or w in plural)
                assert singular_subject == (head in singular), f"{auxiliary} ... {head}: {english}"
        else:  # a statement with a noun subject: its head noun is followed by the verb
            head_index = next(i for i, w in enumerate(words) if w in singular or w in plural)
            verb = words[head_index + 1]
            if words[head_index] in singular:
                assert verb in third_person, f"{words[head_index]} + {verb}: {english}"
            else:
                assert verb in base and verb not in third_person, f"{words[head_index]} + {verb}: {english}"


def sources_of(pairs):
    return list(dict.fromkeys((en, None) for en, _ in pairs))


def test_english_a_and_an(all_pairs):
    wrong = [en for en, _ in sources_of(all_pairs) if re.search(r"\ba [aeiou]|\ban [^aeiou]", en)]
    assert not wrong, f"a/an chosen wrongly: {wrong[:5]}"
