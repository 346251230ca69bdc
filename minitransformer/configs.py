"""Named training configurations: everything a run needs besides the data itself.

    minitransformer train --config toy        # the default of `make train`: runs/toy/
    minitransformer train --config tatoeba    # real Tatoeba pairs from ../shared/data: runs/tatoeba/
    minitransformer train --config my.json    # a JSON file of TrainConfig fields (over the toy defaults)

A TrainConfig is saved as ``config.json`` in the run directory (beside the ModelConfig it
builds), and a resumed run reads it back from there.
"""

import json
import math
import types
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .config import ModelConfig

# fields that may change when a run is resumed: how long to train, not what is trained
BUDGET_FIELDS = ("epochs", "minutes", "max_steps")


class ConfigError(ValueError):
    """A config name, file or value cannot be used; the message says which and why."""


# SentencePiece needs room for pad, unk, bos, eos and at least a few characters
MIN_VOCAB_SIZE = 16


def _check_type(name, value, annotation):
    """``value`` must be of the field's annotated type (int, float, str, bool, or X | None);
    a float field takes an int, no number field takes a bool, and floats must be finite."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"TrainConfig.{name} must be a finite number, got {value!r}")
            return
        if kind is str and isinstance(value, str):
            return
    expected = " or ".join("None" if kind is type(None) else kind.__name__ for kind in allowed)
    raise ConfigError(f"TrainConfig.{name} must be {expected}, got {value!r}")


@dataclass
class TrainConfig:
    # the run's name; the default run directory is runs/<name>/
    name: str = "toy"

    # --- data: tab-separated English<TAB>French files (relative paths: from the working
    # directory, else from the project root) ---
    train_data: str = "data/toy-train.tsv"
    # None: hold out `held_out_sources` distinct English sources of train_data instead
    valid_data: str | None = "data/toy-valid.tsv"
    test_data: str | None = "data/toy-test.tsv"
    # an extra test set reported separately (the toy corpus's unseen combinations), or None
    compositional_test_data: str | None = "data/toy-test-compositional.tsv"
    # distinct sources held out for each of valid and test when their file is None
    held_out_sources: int = 500

    # --- tokenizer (SentencePiece) ---
    # pieces in the vocabulary (per language when not shared); small corpora get fewer
    vocab_size: int = 1000
    # one English-French vocabulary (needed for share_embeddings) or one per language
    shared_vocab: bool = True
    # "bpe" or "unigram"
    tokenizer_model_type: str = "bpe"

    # --- model (see minitransformer/config.py for each) ---
    # "transformer", or a recurrent "rnnenc" / "rnnsearch" (minitransformer/architectures.py)
    architecture: str = "transformer"
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    dropout: float = 0.1
    # the longest sentence in tokens (longer training pairs are skipped, and counted)
    max_len: int = 64
    pre_norm: bool = False
    # the output projection is the target embedding, transposed
    tie_output: bool = True
    # one embedding matrix for both languages (needs shared_vocab)
    share_embeddings: bool = True
    dtype: str = "float32"
    # self-attention methods, e.g. "performer:64" (minitransformer/approx/core.py)
    encoder_attention: str = "exact"
    decoder_attention: str = "exact"
    # local self-attention: keys at most this many positions away (None: global)
    attention_window: int | None = None

    # --- optimization ---
    # padded tokens per batch, batch_size × (longest source + longest target)
    max_tokens: int = 2048
    # lr(step) = lr_factor · D^-½ · min(step^-½, step · warmup^-3/2); the peak, at
    # step = warmup, is lr_factor / √(D · warmup)
    lr_factor: float = 1.0
    warmup_steps: int = 400
    # Adam's β₁, β₂, ε: the paper's values
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-9
    # decoupled weight decay (0: the paper's Adam)
    weight_decay: float = 0.0
    # ε of label smoothing: the target puts 1 − ε on the right token (section 5.4)
    label_smoothing: float = 0.1
    # the global gradient norm is clipped to this
    clip_norm: float = 1.0

    # --- budget: training stops at whichever comes first (None: no limit) ---
    epochs: int | None = 10
    # wall-clock minutes for the training loop (periodic evaluation included)
    minutes: float | None = 7.0
    max_steps: int | None = None

    # --- evaluation, logging, checkpoints ---
    # validation loss and BLEU every this many steps
    eval_every: int = 500
    # distinct valid sources decoded for BLEU during training (the end uses all of them)
    eval_sentences: int = 200
    # sample translations printed at each evaluation
    samples: int = 3
    # a progress-bar update / history entry every this many steps
    log_every: int = 10
    # save checkpoints/last and add to the averaging ring every this many steps
    checkpoint_every: int = 250
    # how many step checkpoints the ring keeps, and whether the final weights may be
    # their average (kept only when it scores a better valid BLEU than the last weights)
    keep_checkpoints: int = 5
    average_checkpoints: bool = True

    # seeds the initialization, the dropout stream and the batch order
    seed: int = 0

    def __post_init__(self):
        # every field's type first, so that "d_model": "abc" is named here, not as a
        # TypeError deep inside the model once the tokenizer has trained
        for field in fields(self):
            _check_type(field.name, getattr(self, field.name), field.type)
        for name in ("vocab_size", "max_tokens", "warmup_steps", "eval_every", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.share_embeddings and not self.shared_vocab:
            raise ConfigError("TrainConfig.share_embeddings needs shared_vocab=True")
        if self.epochs is None and self.minutes is None and self.max_steps is None:
            raise ConfigError("TrainConfig needs a budget: epochs, minutes or max_steps")
        for name in BUDGET_FIELDS:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"TrainConfig.{name} must be positive (or None for no limit), got {value!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"TrainConfig.label_smoothing must lie in [0, 1), got {self.label_smoothing!r}")
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ConfigError(
                f"TrainConfig.vocab_size must be at least {MIN_VOCAB_SIZE} (4 special pieces and the characters), "
                f"got {self.vocab_size}"
            )
        for name in ("keep_checkpoints", "held_out_sources", "eval_sentences", "samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be ≥ 0, got {getattr(self, name)!r}")
        for name in ("lr_factor", "clip_norm", "eps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TrainConfig.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"TrainConfig.{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"TrainConfig.weight_decay must be ≥ 0, got {self.weight_decay!r}")
        if self.tokenizer_model_type not in ("bpe", "unigram"):
            raise ConfigError(f"TrainConfig.tokenizer_model_type must be 'bpe' or 'unigram', got {self.tokenizer_model_type!r}")
        # the model's own checks (d_model divisible by n_heads, dropout in [0, 1), the dtype…)
        # now, with a stand-in vocabulary: the real sizes are known only after the tokenizer
        try:
            self.model_config(self.vocab_size, self.vocab_size)
        except ValueError as error:
            raise ConfigError(str(error).replace("ModelConfig.", "TrainConfig.").replace("RNNConfig.", "TrainConfig.")) from None

    def model_config(self, src_vocab_size, tgt_vocab_size):
        """The ModelConfig for vocabularies of these sizes (known once the tokenizer exists)."""
        from .architectures import model_config

        recurrent = model_config(self, src_vocab_size, tgt_vocab_size)
        if recurrent is not None:
            return recurrent
        return ModelConfig(
            src_vocab_size=src_vocab_size,
            tgt_vocab_size=tgt_vocab_size,
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_ff=self.d_ff,
            n_encoder_layers=self.n_encoder_layers,
            n_decoder_layers=self.n_decoder_layers,
            dropout=self.dropout,
            max_len=self.max_len,
            pre_norm=self.pre_norm,
            tie_output=self.tie_output,
            share_embeddings=self.share_embeddings,
            pad_id=0,
            dtype=self.dtype,
            encoder_attention=self.encoder_attention,
            decoder_attention=self.decoder_attention,
            attention_window=self.attention_window,
        )

    def peak_lr(self):
        return self.lr_factor / (self.d_model * self.warmup_steps) ** 0.5

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values, base=None):
        """Build from a dict, over ``base`` (default: the field defaults); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return replace(base, **values) if base is not None else cls(**values)


# The toy corpus (data/toy-*.tsv): a small grammar of English sentences and their French
# translations. A small model on a vocabulary of about whole words, tuned so that
# `make train` finishes within 10 minutes on 2 CPU cores with a test BLEU above 90; the
# minutes budget stops a slow machine in time. What it measured, on which machine, is in
# the README's results table. (These are also the field defaults.)
TOY = TrainConfig(
    name="toy",
    vocab_size=1000,
    d_model=64,
    n_heads=4,
    d_ff=256,
    n_encoder_layers=2,
    n_decoder_layers=2,
    dropout=0.1,
    max_tokens=2048,
    lr_factor=1.0,  # peak lr 1 / √(64 · 400) ≈ 6e-3: a small model takes a large step
    warmup_steps=400,
    epochs=10,
    minutes=7.0,  # leaves time for the final evaluation within the 10 minutes
)

# Real Tatoeba pairs: a small model (D = 256, 3 + 3 layers), for a 10-minute run. The valid file
# is given; a test part is held out of the training file by English source.
TATOEBA = TrainConfig(
    name="tatoeba",
    train_data="../shared/data/tatoeba-fra-eng-train.tsv",
    valid_data="../shared/data/tatoeba-fra-eng-valid.tsv",
    test_data=None,
    compositional_test_data=None,
    held_out_sources=1000,
    vocab_size=8000,
    d_model=256,
    n_heads=4,
    d_ff=1024,
    n_encoder_layers=3,
    n_decoder_layers=3,
    dropout=0.1,
    max_len=64,
    # pre-norm: with about a thousand steps in 10 minutes (the README's table has the count
    # measured) it learns far faster than post-norm.
    # Measured at step 400 (same seed, batches and lr): valid loss 2.23 and BLEU 23.6
    # pre-norm, against 3.21 and 3.7 post-norm (and 3.8 at step 200 with half the lr).
    pre_norm=True,
    max_tokens=4096,
    lr_factor=0.4,  # peak lr 0.4 / √(256 · 150) ≈ 2e-3; a peak of 3.6e-3 did worse (2.39 at step 400)
    warmup_steps=150,
    epochs=None,
    minutes=10.0,
    eval_every=200,
    eval_sentences=200,
    checkpoint_every=50,
    keep_checkpoints=5,
)

CONFIGS = {"toy": TOY, "tatoeba": TATOEBA}


def get_config(name_or_path):
    """A named config, or a JSON file of TrainConfig fields applied over the toy defaults."""
    if name_or_path in CONFIGS:
        return CONFIGS[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json":
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: cannot read the config ({error})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a config file holds a JSON object of TrainConfig fields")
        values.setdefault("name", path.stem)  # runs/<file name>/ unless the file names the run
        try:
            return TrainConfig.from_dict(values, base=TOY)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{path}: {error}") from None
    raise ConfigError(f"unknown config {name_or_path!r}; choose {', '.join(CONFIGS)} or a .json file")
