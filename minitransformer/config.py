"""The model's hyperparameters: one commented dataclass, saved with every checkpoint.

    config = ModelConfig(src_vocab_size=1000, tgt_vocab_size=1000, d_model=64, n_heads=4)
    ModelConfig(d_model=64, n_heads=4).with_vocabulary(tokenizer)   # the sizes and pad id: the tokenizer's

A run config (configs.py: TrainConfig.model, the "model" object of its JSON) holds a
ModelConfig without vocabulary: every other field is set and checked there, and
``with_vocabulary`` completes it once the tokenizer exists. Only a complete config builds a
model. Its defaults that depend on other fields (final_norm) are settled then, so that a
change of pre_norm in a run config still moves them.
"""

from dataclasses import dataclass, replace

from .fields import ConfigError, Fields
from .tokenizer import Tokenizer

DTYPES = ("float32", "float64")
ATTENTION_CORES = ("fused", "blocked")


class VocabularyFields(Fields):
    """What the model configs of every architecture share: two vocabulary sizes and a
    padding id, which come from the tokenizer, and the dtype."""

    def with_vocabulary(self, tokenizer):
        """The config of the model to build for ``tokenizer``: the one place where the
        vocabulary sizes and the padding id are read from it."""
        return replace(self, src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size,
                       pad_id=tokenizer.pad_id)

    @property
    def has_vocabulary(self):
        return self.src_vocab_size is not None and self.tgt_vocab_size is not None

    def check_common(self):
        """The fields every model config has: the vocabulary sizes, the padding id, the dtype."""
        name = type(self).__name__
        self.check_positive_ints("src_vocab_size", "tgt_vocab_size")
        if self.dtype not in DTYPES:
            raise ConfigError(f"{name}.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.has_vocabulary and not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ConfigError(f"{name}.pad_id={self.pad_id} lies outside the vocabulary")

    def require_vocabulary(self):
        """A model is built only from a complete config."""
        if not self.has_vocabulary:
            raise ConfigError(f"{type(self).__name__} has no vocabulary sizes: they are the tokenizer's, "
                              "config.with_vocabulary(tokenizer) sets them")


@dataclass
class ModelConfig(VocabularyFields):
    # vocabulary sizes (None until the tokenizer is known); with a shared SentencePiece
    # vocabulary the two are equal
    src_vocab_size: int | None = None
    tgt_vocab_size: int | None = None
    # D: width of every residual stream, embedding and attention output
    d_model: int = 512
    # H: attention heads per layer; each head has width Dh = D / H
    n_heads: int = 8
    # F: hidden width of the position-wise feed-forward block
    d_ff: int = 2048
    # N: layers in the encoder stack and in the decoder stack
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    # dropout on embeddings+positions and on every sublayer output (and inside the FFN)
    dropout: float = 0.1
    # the longest sequence the positional table covers
    max_len: int = 256
    # False: post-norm, x = LayerNorm(x + Sublayer(x)) as in the paper.
    # True: pre-norm, x = x + Sublayer(LayerNorm(x)), which trains more stably when deep.
    pre_norm: bool = False
    # a LayerNorm after the last encoder and last decoder layer; None means "when pre-norm"
    # (pre-norm leaves the residual stream unnormalized, so it needs one at the end),
    # settled once the vocabulary sizes are set
    final_norm: bool | None = None
    # use the target embedding matrix, transposed, as the output projection (section 3.4)
    tie_output: bool = True
    # one embedding matrix for source and target (needs a shared vocabulary)
    share_embeddings: bool = False
    # local attention: in self-attention a position sees only keys at most this many
    # positions away (a band mask); None is global attention, as in the paper
    attention_window: int | None = None
    # the attention core: "fused" stores the (T, S) weights for the backward (layers/attention.py);
    # "blocked" recomputes them block by block from the log-sum-exp (layers/blocked_attention.py),
    # so memory grows like T + S instead of T·S, for one sixth more matrix work
    attention_core: str = "fused"
    # keys and queries per block of the blocked core
    attention_block_size: int = 64
    # the self-attention method of the encoder and of the decoder, with its size:
    # "exact", "linformer:32", "performer:64", "nystrom:8", "sampling:16" (the decoder's
    # must be causal: "exact" or "performer:m"); see minitransformer/approx/core.py
    encoder_attention: str = "exact"
    decoder_attention: str = "exact"
    # seeds the approximations' random features and samples
    attention_seed: int = 0
    # the id of the padding token: masked as a key, ignored by the loss, its embedding frozen
    # (the tokenizer's: with_vocabulary sets it)
    pad_id: int = Tokenizer.pad_id
    # ε in LayerNorm's √(σ² + ε)
    layernorm_eps: float = 1e-5
    # parameter and activation dtype
    dtype: str = "float32"

    def __post_init__(self):
        self.check_types()
        self.check_common()
        self.check_positive_ints("d_model", "n_heads", "d_ff", "max_len", "attention_block_size")
        for name in ("n_encoder_layers", "n_decoder_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ModelConfig.{name} must be an integer ≥ 1, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads != 0:
            raise ConfigError(f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        self.check_fraction("dropout")
        if self.attention_window is not None and self.attention_window < 0:
            raise ConfigError(f"ModelConfig.attention_window must be None or an integer ≥ 0, got {self.attention_window!r}")
        if self.attention_core not in ATTENTION_CORES:
            raise ConfigError(f"ModelConfig.attention_core must be one of {ATTENTION_CORES}, got {self.attention_core!r}")
        if not self.layernorm_eps > 0:
            raise ConfigError(f"ModelConfig.layernorm_eps must be positive, got {self.layernorm_eps!r}")
        self._check_attention_methods()
        if self.share_embeddings and self.has_vocabulary and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError(
                "ModelConfig.share_embeddings needs equal vocabularies, got "
                f"src_vocab_size={self.src_vocab_size} and tgt_vocab_size={self.tgt_vocab_size}"
            )
        if self.final_norm is None and self.has_vocabulary:
            self.final_norm = self.pre_norm

    def _check_attention_methods(self):
        from .approx.core import parse_attention  # here: approx/ imports the layers

        parse_attention(self.encoder_attention, "ModelConfig.encoder_attention")
        parse_attention(self.decoder_attention, "ModelConfig.decoder_attention", causal=True)
        if (self.attention_window is not None or self.attention_core != "fused") and (
                self.encoder_attention, self.decoder_attention) != ("exact", "exact"):
            raise ConfigError("ModelConfig.attention_window and attention_core='blocked' are exact attention; they "
                              f"cannot be combined with encoder_attention={self.encoder_attention!r}, "
                              f"decoder_attention={self.decoder_attention!r}")

    @property
    def head_dim(self):
        return self.d_model // self.n_heads
