"""The model's hyperparameters: one commented dataclass, saved with every checkpoint."""

from dataclasses import asdict, dataclass, fields

DTYPES = ("float32", "float64")
ATTENTION_CORES = ("fused", "blocked")


@dataclass
class ModelConfig:
    # vocabulary sizes; with a shared SentencePiece vocabulary the two are equal
    src_vocab_size: int
    tgt_vocab_size: int
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
    # (pre-norm leaves the residual stream unnormalized, so it needs one at the end)
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
    pad_id: int = 0
    # ε in LayerNorm's √(σ² + ε)
    layernorm_eps: float = 1e-5
    # parameter and activation dtype
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        for name in ("n_encoder_layers", "n_decoder_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be an integer ≥ 1, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"ModelConfig.d_model={self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must lie in [0, 1), got {self.dropout!r}")
        if self.attention_window is not None and (
            not isinstance(self.attention_window, int) or self.attention_window < 0
        ):
            raise ValueError(
                f"ModelConfig.attention_window must be None or an integer ≥ 0, got {self.attention_window!r}"
            )
        if self.attention_core not in ATTENTION_CORES:
            raise ValueError(f"ModelConfig.attention_core must be one of {ATTENTION_CORES}, got {self.attention_core!r}")
        if not isinstance(self.attention_block_size, int) or isinstance(self.attention_block_size, bool) \
                or self.attention_block_size < 1:
            raise ValueError(f"ModelConfig.attention_block_size must be a positive integer, got {self.attention_block_size!r}")
        from .approx.core import parse_attention  # here: approx/ imports the layers

        parse_attention(self.encoder_attention, "ModelConfig.encoder_attention")
        parse_attention(self.decoder_attention, "ModelConfig.decoder_attention", causal=True)
        if (self.attention_window is not None or self.attention_core != "fused") and (
                self.encoder_attention, self.decoder_attention) != ("exact", "exact"):
            raise ValueError("ModelConfig.attention_window and attention_core='blocked' are exact attention; they cannot be "
                             f"combined with encoder_attention={self.encoder_attention!r}, "
                             f"decoder_attention={self.decoder_attention!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "ModelConfig.share_embeddings needs equal vocabularies, got "
                f"src_vocab_size={self.src_vocab_size} and tgt_vocab_size={self.tgt_vocab_size}"
            )
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"ModelConfig.pad_id={self.pad_id} lies outside the vocabulary")
        if self.final_norm is None:
            self.final_norm = self.pre_norm

    @property
    def head_dim(self):
        return self.d_model // self.n_heads

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build from a dict (a saved config); an unknown key is an error that names it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        return cls(**values)
