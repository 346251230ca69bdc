"""Named training configurations: everything a run needs besides the data itself.

    minitransformer train --config toy        # the default of `make train`: runs/toy/
    minitransformer train --config tatoeba    # real Tatoeba pairs from ../shared/data: runs/tatoeba/
    minitransformer train --config my.json    # a JSON file of TrainConfig fields (over the toy defaults)

    {"name": "wide", "max_steps": 2000, "model": {"d_model": 128, "n_heads": 8, "final_norm": true}}

A TrainConfig holds the model's config, ``TrainConfig.model`` (a ModelConfig, config.py, or
for a recurrent architecture an RNNConfig, rnn/config.py): every model field is set in the
JSON's "model" object and checked there, once, by the model config itself. The vocabulary
sizes and the padding id are left out: they are the tokenizer's, filled in by
``config.model.with_vocabulary(tokenizer)`` once it exists.

A TrainConfig is saved as ``config.json`` in the run directory (beside the complete model
config it builds), and a resumed run reads it back from there. A config.json or a JSON file
in the earlier flat layout, the model's fields beside the others ("d_model": 64), still
loads: ``from_dict`` moves them into the model section.
"""

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from .architectures import NAMES as ARCHITECTURES
from .architectures import architecture_of, converted
from .config import ModelConfig
from .fields import ConfigError, Fields, renamed
from .rnn import RNNConfig
from .tokenizer import Tokenizer

# fields that may change when a run is resumed: how long to train, not what is trained
BUDGET_FIELDS = ("epochs", "minutes", "max_steps")

# SentencePiece needs room for pad, unk, bos, eos and at least a few characters
MIN_VOCAB_SIZE = 16

# the model's fields that the run config's flat layout (before the "model" section) held
FLAT_MODEL_FIELDS = ("d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers", "dropout", "max_len",
                     "pre_norm", "tie_output", "share_embeddings", "dtype", "encoder_attention", "decoder_attention",
                     "attention_window")
# what a run's model config takes from the tokenizer, never from the run config
TOKENIZER_FIELDS = ("src_vocab_size", "tgt_vocab_size", "pad_id")

# the toy model: D = 64, 2 + 2 layers of 4 heads, F = 256, one embedding matrix for both
# languages (the field default of TrainConfig.model)
TOY_MODEL = ModelConfig(d_model=64, n_heads=4, d_ff=256, n_encoder_layers=2, n_decoder_layers=2, dropout=0.1,
                        max_len=64, share_embeddings=True)


@dataclass
class TrainConfig(Fields):
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

    # --- model ---
    # "transformer", or a recurrent "rnnenc" / "rnnsearch" (minitransformer/architectures.py)
    architecture: str = "transformer"
    # the model's hyperparameters, without vocabulary (config.py for each field; an RNNConfig
    # for the recurrent architectures); model.max_len is also the longest sentence trained
    # on, in pieces (longer training pairs are skipped, and counted)
    model: ModelConfig | RNNConfig = field(default_factory=lambda: replace(TOY_MODEL))
    # under mpiexec: split every source sentence's positions over the ranks, the encoder's
    # self-attention on the ring, instead of the batch's rows (minitransformer/parallel/sequence_parallel.py)
    sequence_parallel: bool = False

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
        # every field's type first, so that "max_tokens": "abc" is named here, not as a
        # TypeError deep inside the loop once the tokenizer has trained
        self.check_types()
        self.check_positive_ints("vocab_size", "max_tokens", "warmup_steps", "eval_every", "log_every",
                                 "checkpoint_every")
        if self.epochs is None and self.minutes is None and self.max_steps is None:
            raise ConfigError("TrainConfig needs a budget: epochs, minutes or max_steps")
        for name in BUDGET_FIELDS:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"TrainConfig.{name} must be positive (or None for no limit), got {value!r}")
        self.check_fraction("label_smoothing", "beta1", "beta2")
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
        if self.weight_decay < 0:
            raise ConfigError(f"TrainConfig.weight_decay must be ≥ 0, got {self.weight_decay!r}")
        if self.tokenizer_model_type not in ("bpe", "unigram"):
            raise ConfigError(f"TrainConfig.tokenizer_model_type must be 'bpe' or 'unigram', got {self.tokenizer_model_type!r}")
        self._check_model()

    def _check_model(self):
        """The model section is checked by its own class when built; here, what ties it to the run."""
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"TrainConfig.architecture must be one of {', '.join(ARCHITECTURES)}, "
                              f"got {self.architecture!r}")
        if architecture_of(self.model) != self.architecture:
            raise ConfigError(f"TrainConfig.model is a {architecture_of(self.model)} config but the architecture is "
                              f"{self.architecture!r}; config.with_architecture({self.architecture!r}) converts it")
        given = [name for name in TOKENIZER_FIELDS[:2] if getattr(self.model, name) is not None]
        if given or self.model.pad_id != Tokenizer.pad_id:
            raise ConfigError(f"TrainConfig.model.{(given or ['pad_id'])[0]} is the tokenizer's: leave it out of the "
                              "run config (vocab_size and shared_vocab choose the vocabulary)")
        if getattr(self.model, "share_embeddings", False) and not self.shared_vocab:
            raise ConfigError("TrainConfig.model.share_embeddings needs shared_vocab=True")

    def peak_lr(self):
        """The learning rate at step = warmup: lr_factor / √(D · warmup)."""
        return self.lr_factor / (self.model.d_model * self.warmup_steps) ** 0.5

    def with_model(self, **changes):
        """This run config with some model fields changed: ``config.with_model(d_model=32)``."""
        return replace(self, model=replace(self.model, **changes))

    def with_architecture(self, architecture):
        """This run config training ``architecture``, its model section converted
        (architectures.converted: the RNN widths are the Transformer's d_model)."""
        return replace(self, architecture=architecture, model=converted(self.model, architecture, TOY_MODEL))

    def to_dict(self):
        values = super().to_dict()
        for name in TOKENIZER_FIELDS:
            values["model"].pop(name)
        return values

    def settings(self):
        """Every field by its path, {"seed": 0, …, "model.d_model": 64, …}: what a resumed run compares."""
        values = self.to_dict()
        model = values.pop("model")
        return {**values, **{f"model.{name}": value for name, value in model.items()}}

    @classmethod
    def from_dict(cls, values, base=None):
        """Build from a dict (a JSON config, or a run's saved one), over ``base`` (default: the
        field defaults); the model section over base's. Unknown keys are errors, and the
        earlier flat layout, the model's fields at the top, is read as a model section."""
        base = base if base is not None else cls()
        values = dict(values)
        flat = {name: values.pop(name) for name in FLAT_MODEL_FIELDS if name in values}
        section = values.pop("model", {})
        if not isinstance(section, dict):
            raise ConfigError(f"TrainConfig.model must be a JSON object of model fields, got {section!r}")
        section = dict(section)
        if flat and section:
            raise ConfigError(f"TrainConfig: {', '.join(flat)} belong in the \"model\" section, beside "
                              f"{', '.join(section)}")
        cls.check_known(values)
        architecture = values.get("architecture", base.architecture)
        try:
            if flat:  # the flat layout's fields were those of a Transformer, whatever it trained
                model = converted(converted(base.model, "transformer", TOY_MODEL).updated(flat), architecture)
            else:
                model = converted(base.model, architecture, TOY_MODEL)
            for name in TOKENIZER_FIELDS:
                if section.get(name) is None:
                    section.pop(name, None)  # a saved run's None: the tokenizer's, as the default is
            model = model.updated(section)
        except (TypeError, ValueError) as error:
            raise renamed(error, ("ModelConfig", "RNNConfig"), "TrainConfig.model") from None
        return replace(base, **values, model=model)


# The toy corpus (data/toy-*.tsv): a small grammar of English sentences and their French
# translations. A small model on a vocabulary of about whole words, tuned so that
# `make train` finishes within 10 minutes on 2 CPU cores with a test BLEU above 90; the
# minutes budget stops a slow machine in time. What it measured, on which machine, is in
# the README's results table. (These are also the field defaults.)
TOY = TrainConfig(
    name="toy",
    vocab_size=1000,
    model=TOY_MODEL,
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
    # pre-norm: with about a thousand steps in 10 minutes (the README's table has the count
    # measured) it learns far faster than post-norm.
    # Measured at step 400 (same seed, batches and lr): valid loss 2.23 and BLEU 23.6
    # pre-norm, against 3.21 and 3.7 post-norm (and 3.8 at step 200 with half the lr).
    model=replace(TOY_MODEL, d_model=256, d_ff=1024, n_encoder_layers=3, n_decoder_layers=3, pre_norm=True),
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
