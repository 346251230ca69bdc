"""The SentencePiece tokenizer: special ids, determinism, round trips, save/load, and a
vocabulary per language as an option."""

import itertools

import pytest

from minitransformer.tokenizer import Tokenizer, TokenizerError

ENGLISH_WORDS = ["the", "a", "black", "white", "small", "old", "cat", "dog", "bird", "horse"]
FRENCH_WORDS = ["le", "la", "noir", "blanche", "petit", "vieux", "chat", "chien", "oiseau", "cheval"]
VERBS = [("sleeps", "dort"), ("eats", "mange"), ("runs", "court"), ("sings", "chante")]


def corpus():
    """A few hundred short sentence pairs, with accents and punctuation."""
    english, french = [], []
    for (i, j, (en_verb, fr_verb)) in itertools.product(range(2, 10), range(2, 10), VERBS):
        english.append(f"the {ENGLISH_WORDS[i]} {ENGLISH_WORDS[j]} {en_verb} .")
        french.append(f"le {FRENCH_WORDS[j]} {FRENCH_WORDS[i]} {fr_verb} ; déjà été !")
    return english, french


@pytest.fixture(scope="module")
def shared_tokenizer(tmp_path_factory):
    english, french = corpus()
    return Tokenizer.train(english, french, tmp_path_factory.mktemp("tok"), vocab_size=120)


def test_special_ids(shared_tokenizer):
    assert (Tokenizer.pad_id, Tokenizer.unk_id, Tokenizer.bos_id, Tokenizer.eos_id) == (0, 1, 2, 3)
    assert shared_tokenizer.tgt_pieces([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert shared_tokenizer.shared
    assert shared_tokenizer.src_vocab_size == shared_tokenizer.tgt_vocab_size == 120


def test_encode_has_no_bos_or_eos_and_round_trips(shared_tokenizer):
    english, french = corpus()
    for sentence in english[:50]:
        ids = shared_tokenizer.encode_src(sentence)
        assert ids and all(i > 3 for i in ids)
        assert shared_tokenizer.decode_src(ids) == sentence
    for sentence in french[:50]:
        ids = shared_tokenizer.encode_tgt(sentence)
        assert all(i > 3 for i in ids)
        assert shared_tokenizer.decode_tgt(ids) == sentence


def test_decoding_drops_special_tokens(shared_tokenizer):
    ids = shared_tokenizer.encode_tgt("le chat noir dort .")
    assert shared_tokenizer.decode_tgt([2] + ids + [3, 0, 0]) == "le chat noir dort ."


def test_pieces_show_word_boundaries(shared_tokenizer):
    ids = shared_tokenizer.encode_src("the black cat sleeps .")
    pieces = shared_tokenizer.src_pieces(ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces).replace("▁", " ").strip() == "the black cat sleeps ."


def test_unknown_characters_map_to_unk(shared_tokenizer):
    assert Tokenizer.unk_id in shared_tokenizer.encode_src("the 猫 sleeps .")


def test_training_is_deterministic(tmp_path):
    english, french = corpus()
    first = Tokenizer.train(english, french, tmp_path / "one", vocab_size=100, seed=0)
    second = Tokenizer.train(english, french, tmp_path / "two", vocab_size=100, seed=0)
    assert (tmp_path / "one" / "shared.model").read_bytes() == (tmp_path / "two" / "shared.model").read_bytes()
    assert first.encode_tgt(french[7]) == second.encode_tgt(french[7])


def test_save_and_load_give_the_same_encodings(shared_tokenizer, tmp_path):
    english, french = corpus()
    out = tmp_path / "tok"
    trained = Tokenizer.train(english, french, out, vocab_size=120)
    loaded = Tokenizer.load(out)
    assert loaded.shared and loaded.src_vocab_size == trained.src_vocab_size
    for sentence in english[::37]:
        assert loaded.encode_src(sentence) == trained.encode_src(sentence)
    for sentence in french[::37]:
        assert loaded.encode_tgt(sentence) == trained.encode_tgt(sentence)


def test_separate_vocabularies(tmp_path):
    english, french = corpus()
    tokenizer = Tokenizer.train(english, french, tmp_path, vocab_size=60, shared=False)
    assert not tokenizer.shared
    assert sorted(p.name for p in tmp_path.glob("*.model")) == ["src.model", "tgt.model"]
    # each side has its own pieces: French accents are not in the English vocabulary
    assert Tokenizer.unk_id in tokenizer.encode_src("déjà")
    assert Tokenizer.unk_id not in tokenizer.encode_tgt("déjà")
    loaded = Tokenizer.load(tmp_path)
    assert not loaded.shared
    assert loaded.decode_tgt(loaded.encode_tgt(french[3])) == french[3]
    assert loaded.decode_src(loaded.encode_src(english[3])) == english[3]


def test_a_small_corpus_gets_a_smaller_vocabulary_instead_of_an_error(tmp_path):
    tokenizer = Tokenizer.train(["a b"], ["c d"], tmp_path, vocab_size=5000)
    assert 4 < tokenizer.src_vocab_size < 5000
    assert tokenizer.decode_tgt(tokenizer.encode_tgt("c d")) == "c d"


def test_load_errors_name_the_directory(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.json is missing") as error:
        Tokenizer.load(tmp_path / "absent")
    assert "absent" in str(error.value)
    (tmp_path / "tokenizer.json").write_text('{"shared": true}')
    with pytest.raises(TokenizerError, match="shared.model"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("not json")
    with pytest.raises(TokenizerError, match="unreadable"):
        Tokenizer.load(tmp_path)


def test_no_sentences_is_an_error(tmp_path):
    with pytest.raises(TokenizerError):
        Tokenizer.train([], ["x"], tmp_path, vocab_size=10)
