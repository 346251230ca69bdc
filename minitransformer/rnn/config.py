"""The recurrent models' hyperparameters: one commented dataclass, saved with every checkpoint."""

from dataclasses import asdict, dataclass, fields

from ..config import DTYPES

ARCHITECTURES = ("rnnenc", "rnnsearch")


@dataclass
class RNNConfig:
    # "rnnenc": the decoder sees only the encoder's final state (Cho et al., 2014);
    # "rnnsearch": it also attends over every encoder state at every step (Bahdanau et al.)
    architecture: str
    src_vocab_size: int
    tgt_vocab_size: int
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
    # the id of the padding token: masked out of the encoder and the attention
    pad_id: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"RNNConfig.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        for name in ("src_vocab_size", "tgt_vocab_size", "embed_size", "hidden_size", "align_size", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RNNConfig.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RNNConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"RNNConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"RNNConfig.pad_id={self.pad_id} lies outside the vocabulary")

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

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build from a dict (a saved config); an unknown key is an error that names it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown RNNConfig field(s): {', '.join(unknown)}")
        return cls(**values)
