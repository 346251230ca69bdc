"""The recurrent models' hyperparameters: one commented dataclass, saved with every checkpoint.

Like ModelConfig (../config.py), a run config holds one without vocabulary, and
``with_vocabulary(tokenizer)`` completes it once the tokenizer exists.
"""

from dataclasses import dataclass

from ..config import VocabularyFields
from ..fields import ConfigError
from ..tokenizer import Tokenizer

ARCHITECTURES = ("rnnenc", "rnnsearch")


@dataclass
class RNNConfig(VocabularyFields):
    # "rnnenc": the decoder sees only the encoder's final state (Cho et al., 2014);
    # "rnnsearch": it also attends over every encoder state at every step (Bahdanau et al.)
    architecture: str
    # vocabulary sizes (None until the tokenizer is known)
    src_vocab_size: int | None = None
    tgt_vocab_size: int | None = None
    # E: word embedding width (source and target)
    embed_size: int = 64
    # H: the GRU state width, per direction; an encoder annotation has 2H
    hidden_size: int = 64
    # A: the hidden width of the alignment model, e = vᵀ tanh(W_a s + U_a h) (rnnsearch)
    align_size: int = 64
    # dropout on the source and target embeddings
    dropout: float = 0.1
    # the longest sentence, in pieces, that decoding will produce
    max_len: int = 256
    # the id of the padding token: masked out of the encoder and the attention (the tokenizer's)
    pad_id: int = Tokenizer.pad_id
    dtype: str = "float32"

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"RNNConfig.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        self.check_types()
        self.check_common()
        self.check_positive_ints("embed_size", "hidden_size", "align_size", "max_len")
        self.check_fraction("dropout")

    # the width D that the learning-rate schedule scales by, lr ∝ D^-½ (step.py): the state's
    @property
    def d_model(self):
        return self.hidden_size

    # what the attention trace and views ask of a model config: one attention "layer"
    # (the decoder's cross-attention) with one "head", no self-attention
    @property
    def n_encoder_layers(self):
        return 0

    @property
    def n_decoder_layers(self):
        return 1

    @property
    def n_heads(self):
        return 1

    @property
    def attention_window(self):
        return None
