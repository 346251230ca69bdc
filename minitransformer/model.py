"""The Transformer of "Attention Is All You Need", built bottom-up from the layers.

    memory = Encoder(Dropout(Embed(src)·√D + PE))
    hidden = Decoder(Dropout(Embed(tgt_in)·√D + PE), memory)
    logits = hidden·Wᵀ + b                          W tied to the target embedding by default

Usage:

    from minitransformer.config import ModelConfig
    from minitransformer.model import make_model

    config = ModelConfig(src_vocab_size=100, tgt_vocab_size=100, d_model=64, n_heads=4,
                         d_ff=128, n_encoder_layers=2, n_decoder_layers=2)
    model = make_model(config, seed=0)
    loss = model.loss_and_grads(src, tgt_in, tgt_out, smoothing=0.1, rng=rng)
    model.params["decoder.layers.0.ffn.w_1"], model.grads["decoder.layers.0.ffn.w_1"]

Shapes: src (B, S) and tgt_in / tgt_out (B, T) integer ids, padded with config.pad_id.
``rng`` (a DropoutStream, or a numpy.random.Generator: see layers/dropout.py) switches
dropout on; ``rng=None`` is evaluation.
"""

from typing import NamedTuple

import numpy as np

from . import backends
from .approx.core import attention_backends
from .arrays import check_id_matrix
from .config import ModelConfig
from .layers.decoder import decoder_attention_probs, decoder_backward, decoder_forward
from .layers.embedding import embedding_backward, embedding_forward
from .layers.encoder import encoder_attention_probs, encoder_backward, encoder_forward
from .layers.output import output_backward, output_forward
from .layers.positional import positional_forward, sinusoidal_table
from .params import add_into, count_parameters, params_for, subtree


def padding_mask(ids, pad_id):
    """ids (B, S) -> (B, 1, 1, S) bool: True where the key is a real token."""
    return (ids != pad_id)[:, None, None, :]


def causal_mask(length, xp=np):
    """(1, 1, T, T) bool: query t may attend to keys 0..t, never to the future."""
    return xp.tril(xp.ones((length, length), dtype=bool))[None, None]


def local_mask(query_len, key_len, window, xp=np, query_offset=0):
    """(1, 1, T, S) bool: query t may attend to key s when |t − s| ≤ window (a band).

    Local attention: each position sees a fixed neighbourhood, so its cost stops growing
    with the sequence. ``query_offset`` is the position of the first query, for decoding
    one step at a time.
    """
    query_pos = xp.arange(query_offset, query_offset + query_len)[:, None]  # (T, 1)
    key_pos = xp.arange(key_len)[None, :]  # (1, S)
    return (xp.abs(query_pos - key_pos) <= window)[None, None]


def param_shapes(config):
    """{key: (shape, kind)} for every parameter; kind says how it is initialized."""
    D, F = config.d_model, config.d_ff
    shapes = {}

    def attention(prefix):
        for name in ("q", "k", "v", "o"):
            shapes[f"{prefix}.w_{name}"] = ((D, D), "xavier")
            shapes[f"{prefix}.b_{name}"] = ((D,), "zeros")

    def norm(prefix):
        shapes[f"{prefix}.gamma"] = ((D,), "ones")
        shapes[f"{prefix}.beta"] = ((D,), "zeros")

    def feed_forward(prefix):
        shapes[f"{prefix}.w_1"], shapes[f"{prefix}.b_1"] = ((D, F), "xavier"), ((F,), "zeros")
        shapes[f"{prefix}.w_2"], shapes[f"{prefix}.b_2"] = ((F, D), "xavier"), ((D,), "zeros")

    if config.share_embeddings:
        shapes["embed.weight"] = ((config.src_vocab_size, D), "embedding")
    else:
        shapes["src_embed.weight"] = ((config.src_vocab_size, D), "embedding")
        shapes["tgt_embed.weight"] = ((config.tgt_vocab_size, D), "embedding")
    for i in range(config.n_encoder_layers):
        attention(f"encoder.layers.{i}.self_attn")
        norm(f"encoder.layers.{i}.norm1")
        feed_forward(f"encoder.layers.{i}.ffn")
        norm(f"encoder.layers.{i}.norm2")
    for i in range(config.n_decoder_layers):
        attention(f"decoder.layers.{i}.self_attn")
        norm(f"decoder.layers.{i}.norm1")
        attention(f"decoder.layers.{i}.cross_attn")
        norm(f"decoder.layers.{i}.norm2")
        feed_forward(f"decoder.layers.{i}.ffn")
        norm(f"decoder.layers.{i}.norm3")
    if config.final_norm:
        norm("encoder.norm")
        norm("decoder.norm")
    if not config.tie_output:
        shapes["generator.weight"] = ((config.tgt_vocab_size, D), "xavier")
    shapes["generator.bias"] = ((config.tgt_vocab_size,), "zeros")
    return shapes


def init_params(config, seed=0):
    """All parameters as arrays on the CPU, from one seed (the same on every backend).

    Matrices: Xavier-uniform, U(±√(6 / (fan_in + fan_out))), as PyTorch's nn.Transformer.
    Biases 0, LayerNorm γ = 1 and β = 0. Embeddings: N(0, 1/D), so that after the √D
    scale each entry has unit variance; the padding row is 0.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for key, (shape, kind) in param_shapes(config).items():
        if kind == "xavier":
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, size=shape)
        elif kind == "embedding":
            value = rng.normal(0.0, config.d_model**-0.5, size=shape)
            value[config.pad_id] = 0.0
        elif kind == "ones":
            value = np.ones(shape)
        else:
            value = np.zeros(shape)
        params[key] = value.astype(config.dtype)
    return params


class EmbedCache(NamedTuple):
    embedding: tuple
    dropout: object


class EncodeCache(NamedTuple):
    embed: EmbedCache
    encoder: tuple  # the encoder stack's StackCache


class DecodeCache(NamedTuple):
    embed: EmbedCache
    decoder: tuple  # the decoder stack's StackCache
    output: tuple


class ForwardCache(NamedTuple):
    encode: EncodeCache
    decode: DecodeCache


class Transformer:
    """The encoder-decoder. ``params`` and ``grads`` are dicts of arrays under the same keys."""

    def __init__(self, config: ModelConfig, params, backend):
        self.config = config
        self.backend = backend
        self.xp = backend.xp
        # the self-attention cores: the backend itself, or an approximation or the banded
        # kernel in its place (minitransformer/approx/core.py)
        self.encoder_backend, self.decoder_backend, self.step_backend = attention_backends(config, backend)
        self.params = {key: self.xp.asarray(value) for key, value in params.items()}
        self.grads = {key: self.xp.zeros_like(value) for key, value in self.params.items()}
        # built once, on the backend's device, so no step copies it from the host
        self.positional_table = self.xp.asarray(sinusoidal_table(config.max_len, config.d_model, config.dtype))
        self.src_embed_key = "embed.weight" if config.share_embeddings else "src_embed.weight"
        self.tgt_embed_key = "embed.weight" if config.share_embeddings else "tgt_embed.weight"
        self.output_key = self.tgt_embed_key if config.tie_output else "generator.weight"

    def num_parameters(self):
        return count_parameters(self.params)

    # --- forward -------------------------------------------------------------------------

    def _embed(self, ids, key, rng, offset=0, backend=None):
        """ids (B, L) -> Dropout(Embed(ids)·√D + PE) (B, L, D); ``backend`` runs the dropout."""
        x, cache_embed = embedding_forward(ids, self.params[key])  # (B, L, D)
        x, _ = positional_forward(x, self.positional_table, offset)  # (B, L, D)
        x, cache_drop = (backend or self.backend).dropout_forward(x, self.config.dropout, rng)  # (B, L, D)
        return x, EmbedCache(cache_embed, cache_drop)

    def encode(self, src, rng=None, offset=0, backend=None):
        """src (B, S) -> memory (B, S, D), src_mask (B, 1, 1, S), cache.

        With config.attention_window the encoder's self-attention is local: on the banded
        kernel when it is compiled, else a band mask; the returned src_mask, used by
        cross-attention, stays global.

        Sequence parallelism (parallel/sequence_parallel.py) encodes one rank's block of
        positions: ``offset`` is the global position of src's first column, and ``backend``
        the kernels object of the block (its attention core is the ring); by default the
        model's encoder kernels.
        """
        check_id_matrix(src, "source ids")
        backend = self.encoder_backend if backend is None else backend
        src = self.xp.asarray(src)  # on the GPU backend, ids move to the device once here
        src_mask = padding_mask(src, self.config.pad_id)  # (B, 1, 1, S)
        self_mask = src_mask  # (B, 1, 1, S)
        if self.config.attention_window is not None and not getattr(backend, "handles_window", False):
            length = src.shape[1]
            self_mask = src_mask & local_mask(length, length, self.config.attention_window, self.xp)  # (B,1,S,S)
        x, cache_embed = self._embed(src, self.src_embed_key, rng, offset, backend)  # (B, S, D)
        memory, cache_encoder = encoder_forward(
            x, subtree(self.params, "encoder"), self.config, self_mask, backend, rng
        )  # (B, S, D)
        return memory, src_mask, EncodeCache(cache_embed, cache_encoder)

    def decode(self, tgt_in, memory, src_mask, rng=None, kv_cache=None):
        """tgt_in (B, T), memory (B, S, D) -> logits (B, T, V), cache.

        ``kv_cache`` (decode.py's DecoderCache): decode one step, tgt_in (N, 1) the newest
        token of each of N rows at position kv_cache.length, against the keys and values of
        the earlier steps; the same layers run, on one position. Without it, the whole prefix.
        """
        check_id_matrix(tgt_in, "target ids")
        tgt_in = self.xp.asarray(tgt_in)
        window = self.config.attention_window
        if kv_cache is None:
            if tgt_in.shape[0] != memory.shape[0]:
                raise ValueError(f"target batch {tgt_in.shape[0]} does not match source batch {memory.shape[0]}")
            offset, length = 0, tgt_in.shape[1]
            self_mask = padding_mask(tgt_in, self.config.pad_id)  # (B, 1, 1, T)
            if not getattr(self.decoder_backend, "handles_causal", False):  # a causal core needs no (T, T) mask
                self_mask = causal_mask(length, self.xp) & self_mask  # (B, 1, T, T)
            if window is not None and not getattr(self.decoder_backend, "handles_window", False):
                self_mask = self_mask & local_mask(length, length, window, self.xp)
        else:
            # one new position: the cache holds no future positions and no padding, so only a
            # local window masks anything
            offset = kv_cache.length
            self_mask = None if window is None else local_mask(1, offset + 1, window, self.xp, query_offset=offset)
        y, cache_embed = self._embed(tgt_in, self.tgt_embed_key, rng, offset)  # (B, T, D)
        # a step's keys are all in the past: the step's core is not causal (approx/core.py)
        backend = self.decoder_backend if kv_cache is None else self.step_backend
        hidden, cache_decoder = decoder_forward(
            y, memory, subtree(self.params, "decoder"), self.config, self_mask, src_mask, backend, rng, kv_cache
        )  # (B, T, D)
        logits, cache_output = output_forward(
            hidden, self.params[self.output_key], self.params["generator.bias"]
        )  # (B, T, V)
        return logits, DecodeCache(cache_embed, cache_decoder, cache_output)

    def forward(self, src, tgt_in, rng=None):
        """src (B, S), tgt_in (B, T) -> logits (B, T, V), cache."""
        memory, src_mask, cache_encode = self.encode(src, rng)
        logits, cache_decode = self.decode(tgt_in, memory, src_mask, rng)
        return logits, ForwardCache(cache_encode, cache_decode)

    # --- backward ------------------------------------------------------------------------

    def backward(self, dlogits, cache):
        """dlogits (B, T, V) -> fills self.grads (overwriting them) and returns it.

        It also keeps the gradients with respect to the embedded inputs, Embed(ids)·√D
        (B, S, D) and (B, T, D), in self.input_grads["src"] / ["tgt"], for attribution.
        """
        encode, decode = cache
        grads = {}
        dy, dmemory = decode_backward(self, dlogits, decode, grads)
        dx = encode_backward(self, dmemory, encode, grads)
        self.input_grads = {"src": dx, "tgt": dy}
        # with head gates (minitransformer/interpret/gates.py) the attention layers also
        # returned ∂L/∂A, under "<layer>.attn_probs": kept here, never a parameter
        self.attention_grads = {key: value for key, value in grads.items() if key.endswith(".attn_probs")}
        for key, value in self.params.items():
            self.grads[key] = grads[key].astype(value.dtype, copy=False)
        return self.grads

    def loss(self, src, tgt_in, tgt_out, smoothing=0.0, rng=None):
        """The mean label-smoothed loss, forward only (for validation)."""
        logits, _ = self.forward(src, tgt_in, rng)
        loss, _ = self.backend.cross_entropy_forward(logits, self.xp.asarray(tgt_out), self.config.pad_id, smoothing)
        return float(loss)

    def loss_and_grads(self, src, tgt_in, tgt_out, smoothing=0.0, rng=None):
        """One forward and backward: returns the loss, leaves the gradients in self.grads."""
        logits, cache = self.forward(src, tgt_in, rng)
        tgt_out = self.xp.asarray(tgt_out)
        loss, cache_loss = self.backend.cross_entropy_forward(logits, tgt_out, self.config.pad_id, smoothing)
        self.backward(self.backend.cross_entropy_backward(cache_loss), cache)
        return float(loss)

    # --- inspection ----------------------------------------------------------------------

    @staticmethod
    def attention_maps(cache):
        """The attention weights of a forward pass, per layer:
        {"encoder": [(B, H, S, S)], "decoder_self": [(B, H, T, T)], "cross": [(B, H, T, S)]}."""
        decoder = decoder_attention_probs(cache.decode.decoder)
        return {
            "encoder": encoder_attention_probs(cache.encode.encoder),
            "decoder_self": [self_probs for self_probs, _ in decoder],
            "cross": [cross_probs for _, cross_probs in decoder],
        }


def decode_backward(model, dlogits, cache, grads):
    """The decoder's half of Transformer.backward: dlogits (B, T, V), a DecodeCache ->
    dy (B, T, D) the embedded targets' gradient, dmemory (B, S, D); its parameter gradients
    are added into ``grads``."""
    # in the forward pass this was: logits = hidden·Wᵀ + b
    dhidden, doutput_weight, grads["generator.bias"] = output_backward(dlogits, cache.output)
    add_into(grads, "", {model.output_key: doutput_weight})
    # the decoder stack, which also returns the memory's gradient
    dy, dmemory, decoder_grads = decoder_backward(dhidden, cache.decoder)
    add_into(grads, "decoder", decoder_grads)
    # in the forward pass this was: y = Dropout(Embed(tgt_in)·√D + PE)
    dy = model.backend.dropout_backward(dy, cache.embed.dropout)  # (B, T, D)
    add_into(grads, "", {model.tgt_embed_key: embedding_backward(dy, cache.embed.embedding, model.config.pad_id)})
    return dy, dmemory


def encode_backward(model, dmemory, cache, grads):
    """The encoder's half: dmemory (B, S, D), an EncodeCache -> dx (B, S, D) the embedded
    source's gradient; the encoder's parameter gradients are added into ``grads``."""
    dx, encoder_grads = encoder_backward(dmemory, cache.encoder)
    add_into(grads, "encoder", encoder_grads)
    # in the forward pass this was: x = Dropout(Embed(src)·√D + PE)
    dx = model.backend.dropout_backward(dx, cache.embed.dropout)  # (B, S, D)
    add_into(grads, "", {model.src_embed_key: embedding_backward(dx, cache.embed.embedding, model.config.pad_id)})
    return dx


def make_model(config: ModelConfig, seed=0, backend="numpy", params=None):
    """Build the Transformer from its config: the one builder.

    backend: a name for minitransformer.backends.get ("numpy", "cython", "cupy", "auto")
             or a kernels object (minitransformer/backends/kernels.py). params: optional
             dict to load instead of a fresh init.
    """
    if isinstance(backend, str) or backend is None:
        backend = backends.get(backend)
    if config.attention_core == "blocked" and backend.name == "cupy":
        raise ValueError('attention_core="blocked" has no CuPy kernels yet: use "fused" on the GPU')
    return Transformer(config, params_for(config, seed, params, param_shapes, init_params), backend)

