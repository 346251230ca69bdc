"""Subword tokenization with SentencePiece: text <-> integer ids.

The Transformer reads and writes token ids, not characters. Byte-pair encoding (BPE,
Sennrich et al., 2016) starts from single characters and repeatedly merges the most
frequent adjacent pair into a new piece, until the vocabulary has the requested size:
frequent words become one piece ("▁chat"), rare ones split into pieces it knows
("▁ré", "pond", "ez"), and no word is ever out of vocabulary. SentencePiece treats the
space as an ordinary symbol "▁", so decoding is just concatenation and no language-specific
detokenizer is needed.

    tokenizer = Tokenizer.train(english, french, "runs/toy/tokenizer", vocab_size=500)
    ids = tokenizer.encode_src("the black cat sleeps .")   # [57, 112, 40, 301, 5]  (no bos/eos)
    tokenizer.decode_tgt(tokenizer.encode_tgt("le chat noir dort ."))  # "le chat noir dort ."
    tokenizer = Tokenizer.load("runs/toy/tokenizer")

By default English and French share one vocabulary (the paper's setting for En–De and
what makes a shared embedding matrix possible); ``shared=False`` trains one model per side.
The special ids are fixed for every model: pad 0, unk 1, bos 2, eos 3.

Files in the tokenizer directory: ``tokenizer.json`` (which models, sizes, options) and
``shared.model``, or ``src.model`` and ``tgt.model``.
"""

import io
import json
from pathlib import Path

import sentencepiece as spm

FORMAT_VERSION = 1


class TokenizerError(ValueError):
    """A tokenizer directory is missing or unreadable; the message names the path."""


# the special ids, the same in every model this module trains
SPECIAL_IDS = {"pad": 0, "unk": 1, "bos": 2, "eos": 3}


def train_sentencepiece(sentences, vocab_size, seed, model_type):
    """One SentencePiece model, returned as its serialized bytes.

    Deterministic: a fixed seed for SentencePiece's generator, one thread, and every
    sentence used (no sampling), so the same sentences always give the same bytes.
    """
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=SPECIAL_IDS["pad"],
            unk_id=SPECIAL_IDS["unk"],
            bos_id=SPECIAL_IDS["bos"],
            eos_id=SPECIAL_IDS["eos"],
            # French needs every accented letter; the default 0.9995 would map rare ones to unk
            character_coverage=1.0,
            # a small corpus may not have vocab_size distinct pieces: take what there is
            hard_vocab_limit=False,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as error:
        # e.g. "Vocabulary size is smaller than required_chars": one line, the cause kept
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise TokenizerError(
            f"SentencePiece cannot build a vocabulary of {vocab_size} pieces from this data ({reason}); "
            "change vocab_size in the config"
        ) from None
    return model.getvalue()


def check_special_ids(processor, model_path):
    """A TokenizerError unless the model's pad, unk, bos and eos ids are SPECIAL_IDS."""
    expected = SPECIAL_IDS
    found = {"pad": processor.pad_id(), "unk": processor.unk_id(), "bos": processor.bos_id(), "eos": processor.eos_id()}
    if found != expected:
        raise TokenizerError(f"{model_path}: special ids {found} differ from the expected {expected}")


class Tokenizer:
    pad_id = SPECIAL_IDS["pad"]
    unk_id = SPECIAL_IDS["unk"]
    bos_id = SPECIAL_IDS["bos"]
    eos_id = SPECIAL_IDS["eos"]

    def __init__(self, src_processor, tgt_processor, shared, metadata=None):
        self._src = src_processor
        self._tgt = tgt_processor
        self.shared = bool(shared)
        self.metadata = dict(metadata or {})
        # a loaded SentencePiece model never changes: its size is read once
        self.src_vocab_size = src_processor.get_piece_size()
        self.tgt_vocab_size = tgt_processor.get_piece_size()

    # --- training and loading -----------------------------------------------------------------

    @classmethod
    def train(cls, src_sentences, tgt_sentences, out_dir, vocab_size, shared=True, seed=0, model_type="bpe"):
        """Train on the training split and save into ``out_dir``; returns the Tokenizer.

        shared=True: one vocabulary of ``vocab_size`` pieces learned from both languages.
        shared=False: one vocabulary of ``vocab_size`` pieces for each language.
        """
        src_sentences, tgt_sentences = list(src_sentences), list(tgt_sentences)
        if not src_sentences or not tgt_sentences:
            raise TokenizerError("cannot train a tokenizer on no sentences")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if shared:
            models = {"shared": train_sentencepiece(src_sentences + tgt_sentences, vocab_size, seed, model_type)}
        else:
            models = {
                "src": train_sentencepiece(src_sentences, vocab_size, seed, model_type),
                "tgt": train_sentencepiece(tgt_sentences, vocab_size, seed, model_type),
            }
        for name, model_bytes in models.items():
            (out_dir / f"{name}.model").write_bytes(model_bytes)
        metadata = {
            "format_version": FORMAT_VERSION,
            "shared": bool(shared),
            "model_type": model_type,
            "requested_vocab_size": vocab_size,
            "seed": seed,
        }
        # written last: a directory with tokenizer.json holds complete models
        (out_dir / "tokenizer.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        return cls.load(out_dir)

    @classmethod
    def load(cls, directory):
        """Load a tokenizer saved by ``train``; a TokenizerError names what is missing."""
        directory = Path(directory)
        meta_path = directory / "tokenizer.json"
        if not meta_path.is_file():
            raise TokenizerError(f"{directory}: no tokenizer here (tokenizer.json is missing)")
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
            shared = bool(metadata["shared"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TokenizerError(f"{meta_path}: unreadable tokenizer description ({error})") from None
        names = ("shared", "shared") if shared else ("src", "tgt")
        processors = {}
        for name in set(names):
            model_path = directory / f"{name}.model"
            processor = spm.SentencePieceProcessor()
            try:
                processor.load(str(model_path))
            except (OSError, RuntimeError) as error:
                raise TokenizerError(f"{model_path}: cannot load the SentencePiece model ({error})") from None
            check_special_ids(processor, model_path)
            processors[name] = processor
        return cls(processors[names[0]], processors[names[1]], shared, metadata)

    # --- text <-> ids -------------------------------------------------------------------------

    def encode_src(self, text):
        """English text -> ids, without bos/eos (the encoder input is exactly these)."""
        return self._src.encode(text)

    def encode_tgt(self, text):
        """French text -> ids, without bos/eos (batching adds them)."""
        return self._tgt.encode(text)

    def decode_src(self, ids):
        """ids -> English text; pad/bos/eos are dropped."""
        return self._src.decode([int(i) for i in ids])

    def decode_tgt(self, ids):
        """ids -> French text; pad/bos/eos are dropped."""
        return self._tgt.decode([int(i) for i in ids])

    def src_pieces(self, ids):
        """ids -> their pieces as strings, e.g. ["▁the", "▁black", "▁cat"] (for attention plots)."""
        return [self._src.id_to_piece(int(i)) for i in ids]

    def tgt_pieces(self, ids):
        return [self._tgt.id_to_piece(int(i)) for i in ids]

    def __repr__(self):
        kind = "shared" if self.shared else "separate"
        return f"Tokenizer({kind}, src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size})"
