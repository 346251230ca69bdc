"""The long-sentence split (minitransformer/corpus/long.py): deterministic, binned by
source length, and every construction obeys the grammar's agreement rules."""

import pathlib

from minitransformer.corpus.grammar import NP, Clause
from minitransformer.corpus.long import (
    FILES,
    LENGTH_BINS,
    TEST_PER_BIN,
    build_long_corpus,
    join,
    length_bin,
    relative_from,
    source_length,
    with_relative,
)

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
SMALL = {"train": 2, "valid": 1, "test": 2}


def test_the_generator_is_deterministic_and_fills_every_bin():
    first, second = build_long_corpus(7, SMALL), build_long_corpus(7, SMALL)
    assert first == second
    assert build_long_corpus(8, SMALL) != first
    for name, count in SMALL.items():
        bins = [length_bin(english) for english, _ in first[name]]
        assert bins == [bin_ for bin_ in LENGTH_BINS for _ in range(count)]  # written bin by bin
    sources = [english for pairs in first.values() for english, _ in pairs]
    assert len(sources) == len(set(sources))  # one source, one split


def test_the_committed_test_split_is_binned_from_5_to_59_words():
    lines = (DATA / FILES["test"]).read_text(encoding="utf-8").splitlines()
    english = [line.split("\t")[0] for line in lines]
    lengths = [source_length(sentence) for sentence in english]
    assert min(lengths) == 5 and max(lengths) >= 50
    for low, high in LENGTH_BINS:
        assert sum(low <= length <= high for length in lengths) == TEST_PER_BIN
    train = {line.split("\t")[0] for line in (DATA / FILES["train"]).read_text(encoding="utf-8").splitlines()}
    assert not train & set(english)


def test_a_relative_clause_agrees_with_the_noun_it_modifies():
    # the verb of the relative clause takes the head's number…
    relative = relative_from(Clause(NP("girl"), "see", obj=NP("dog")), NP("boy", plural=True))
    assert relative == ("who see the dog", "qui voient le chien")
    assert relative_from(Clause(NP("boy", plural=True), "see", obj=NP("dog")), NP("girl")) == (
        "who sees the dog", "qui voit le chien")
    # …and a predicate adjective its gender and number
    assert relative_from(Clause(NP("boy"), "be", adjective="tired"), NP("girl", plural=True)) == (
        "who are tired", "qui sont fatiguées")
    # and the held-out combinations of the compositional split stay out (happy girl is one)
    assert relative_from(Clause(NP("boy"), "be", adjective="happy"), NP("girl")) is None
    # the main verb, after the relative clause, still agrees with the head
    main = Clause(NP("boy", plural=True), "sleep")
    assert with_relative(main, "the boys sleep .", "les garçons dorment .", relative) == (
        "the boys who see the dog sleep .", "les garçons qui voient le chien dorment .")
    negated = Clause(NP("boy", plural=True), "sleep", mood="negative")
    assert with_relative(negated, "the boys do not sleep .", "les garçons ne dorment pas .", relative) == (
        "the boys who see the dog do not sleep .", "les garçons qui voient le chien ne dorment pas .")


def test_coordination_and_cause():
    cat, he, dog = ("the cat sleeps .", "le chat dort ."), ("he eats .", "il mange ."), ("the dog runs .", "le chien court .")
    assert join("and", cat, he) == ("the cat sleeps and he eats .", "le chat dort et il mange .")
    # que elides before a vowel sound, and only there
    assert join("because", cat, he) == ("the cat sleeps because he eats .", "le chat dort parce qu'il mange .")
    assert join("because", cat, dog) == ("the cat sleeps because the dog runs .", "le chat dort parce que le chien court .")


def test_every_committed_line_keeps_the_french_rules():
    for name in FILES.values():
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            english, french = line.split("\t")
            assert english.endswith(" .") and french.endswith(" .")
            assert "parce que " + "a" not in french and "parce que il" not in french and "parce que elle" not in french
            assert english.count(" because ") == french.count(" parce qu")
            assert english.count(" who ") == french.count(" qui ")
