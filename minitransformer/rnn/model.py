"""RNNenc and RNNsearch: the two recurrent translators that attention was invented between.

Both read the source with the same bidirectional GRU (gru.py),

    h_j = [→h_j ; ←h_j]                               annotations (B, S, C), C = 2H

and both write the target with one GRU whose state s_i starts from a summary of the source,

    s_0 = tanh(c W_init + b_init),      c = [→h_S ; ←h_1]    (both directions' final states)

They differ only in the context vector c_i that step i reads:

    RNNenc (Cho et al., 2014):      c_i = c                  the same fixed-length vector
    RNNsearch (Bahdanau et al.):    e_ij = vᵀ tanh(s_{i-1} W_a + h_j U_a)    alignment model
                                    α_ij = softmax_j(e_ij)
                                    c_i  = Σ_j α_ij h_j

and then, with y_{i-1} the previous target word (teacher forcing in training):

    s_i = GRU([E y_{i-1} ; c_i], s_{i-1})
    p(y_i | y_<i, x) = softmax([s_i ; E y_{i-1} ; c_i] W_out + b_out)

(Bahdanau et al. read out through a maxout layer; a linear readout keeps the comparison
about the context alone.) RNNenc must push a whole sentence through the C numbers of c;
RNNsearch reads what it needs from all S annotations at every step. The alignment model
is the zoo's additive score (zoo/additive.py), with W_a = w_query, U_a = w_key, v = w_score,
and one change that Bahdanau et al. point out (their appendix A.1.2): h_j U_a does not
depend on the step i, so it is computed once per sentence, not at every step
(alignment_forward below); the softmax and the weighted average are the zoo's.

    from minitransformer.rnn import RNNConfig, make_rnn_model
    model = make_rnn_model(RNNConfig("rnnsearch", src_vocab_size=100, tgt_vocab_size=100))
    loss = model.loss_and_grads(src, tgt_in, tgt_out, smoothing=0.1, rng=rng)

The model offers what the trainer, the decoders and the attention trace ask of the
Transformer (encode, forward, backward, loss_and_grads, a decoding stepper), so
`minitransformer train --model rnnsearch` and `translate` work unchanged.

Size letters: B batch, S source length, T target length, E embedding width, H state width,
C = 2H annotation width, A alignment width, V vocabulary, N decoding rows (B·beams).
"""

from typing import NamedTuple

import numpy as np

from .. import backends
from ..layers.dropout import dropout_backward, dropout_forward
from ..layers.embedding import embedding_backward, embedding_forward
from ..layers.loss import cross_entropy_backward, cross_entropy_forward
from ..arrays import check_id_matrix
from ..params import count_parameters, params_for, subtree
from ..zoo import attention_weights, softmax_average_backward, softmax_average_forward
from .config import RNNConfig
from .gru import bidirectional_backward, bidirectional_forward, gru_cell_backward, gru_cell_forward


def param_shapes(config):
    """{key: (shape, kind)} for every parameter; kind says how it is initialized."""
    E, H, A = config.embed_size, config.hidden_size, config.align_size
    C = 2 * H
    shapes = {
        "src_embed.weight": ((config.src_vocab_size, E), "embedding"),
        "tgt_embed.weight": ((config.tgt_vocab_size, E), "embedding"),
    }

    def gru(prefix, input_width):
        shapes[f"{prefix}.w_input"] = ((input_width, 3 * H), "recurrent")
        shapes[f"{prefix}.w_hidden"] = ((H, 3 * H), "recurrent")
        shapes[f"{prefix}.b_input"] = ((3 * H,), "recurrent")
        shapes[f"{prefix}.b_hidden"] = ((3 * H,), "recurrent")

    gru("encoder.forward", E)
    gru("encoder.backward", E)
    shapes["init.weight"], shapes["init.bias"] = ((C, H), "xavier"), ((H,), "zeros")
    gru("decoder", E + C)
    if config.architecture == "rnnsearch":
        shapes["attention.w_query"] = ((H, A), "xavier")
        shapes["attention.w_key"] = ((C, A), "xavier")
        shapes["attention.w_score"] = ((A,), "score")
    shapes["output.weight"] = ((H + E + C, config.tgt_vocab_size), "xavier")
    shapes["output.bias"] = ((config.tgt_vocab_size,), "zeros")
    return shapes


def init_params(config, seed=0):
    """All parameters from one seed. GRU weights and biases: U(±1/√H), as torch.nn.GRU;
    other matrices Xavier-uniform; embeddings N(0, 1/E) (unit variance after the √E scale
    of layers/embedding.py), the padding row 0."""
    rng = np.random.default_rng(seed)
    params = {}
    for key, (shape, kind) in param_shapes(config).items():
        if kind == "recurrent":
            limit = config.hidden_size**-0.5
            value = rng.uniform(-limit, limit, size=shape)
        elif kind == "xavier":
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            value = rng.uniform(-limit, limit, size=shape)
        elif kind == "score":
            value = rng.uniform(-1.0, 1.0, size=shape) / np.sqrt(shape[0])
        elif kind == "embedding":
            value = rng.normal(0.0, config.embed_size**-0.5, size=shape)
            value[config.pad_id] = 0.0
        else:
            value = np.zeros(shape)
        params[key] = value.astype(config.dtype)
    return params


def alignment_forward(state, projected_keys, w_query, w_score):
    """e_ij = vᵀ tanh(s_{i-1} W_a + h_j U_a), for one step i.

    state (N, H), projected_keys h U_a (N, S, A), w_query W_a (H, A), w_score v (A,)
    -> scores (N, S), cache."""
    hidden = np.tanh((state @ w_query)[:, None, :] + projected_keys)  # (N, S, A)
    scores = hidden @ w_score  # (N, S)
    return scores, (state, w_query, w_score, hidden)


def alignment_backward(dscores, cache):
    """dscores (N, S) -> dstate (N, H), dprojected_keys (N, S, A), dw_query (H, A), dw_score (A,).
    The derivative of zoo/additive.py:additive_score_backward, for one query per row."""
    state, w_query, w_score, hidden = cache
    # in the forward pass this was: scores = hidden @ w_score
    dw_score = np.einsum("nsa,ns->a", hidden, dscores)  # (A,)
    # in the forward pass this was: hidden = tanh(s W_a + h U_a); tanh' = 1 − tanh²
    dpre = dscores[:, :, None] * w_score * (1.0 - hidden * hidden)  # (N, S, A)
    dprojected_query = dpre.sum(axis=1)  # (N, A): the query was broadcast over the S keys
    return dprojected_query @ w_query.T, dpre, state.T @ dprojected_query, dw_score


# --- what every decoder step reads of the source ---------------------------------------------


class SourceMemory(NamedTuple):
    """The source as the decoder reads it, one row per decoding row (N = B, or B·beams)."""

    annotations: np.ndarray  # (N, S, C) h_j
    src_mask: np.ndarray  # (N, S) bool: the real source words
    summary: np.ndarray  # (N, C) c = [→h_S ; ←h_1]
    projected_keys: object  # (N, S, A) h_j U_a, once per sentence (RNNsearch); None (RNNenc)

    def rows(self, rows):
        """The same memory for the rows ``rows`` (N',): beams fork and sentences finish."""
        return SourceMemory(*(None if field is None else field[rows] for field in self))


class SourceGrads:
    """∂L/∂ of each SourceMemory field, summed over the T decoder steps that read it."""

    def __init__(self, memory, dtype):
        self.annotations = np.zeros_like(memory.annotations)  # (B, S, C)
        self.summary = np.zeros_like(memory.summary)  # (B, C)
        if memory.projected_keys is not None:
            self.projected_keys = np.zeros(memory.projected_keys.shape, dtype=dtype)  # (B, S, A)


def summary_of(annotations):
    """annotations (B, S, C) -> c = [→h_S ; ←h_1] (B, C): the fixed-length vector.
    With right padding the left-to-right state at the last column is each sentence's
    final one (padded steps keep it), and ←h_1 is at column 0."""
    H = annotations.shape[2] // 2
    return np.concatenate([annotations[:, -1, :H], annotations[:, 0, H:]], axis=1)  # (B, C)


def source_memory_forward(params, annotations, src_mask, attends):
    """annotations (B, S, C), src_mask (B, S) -> s_0 (B, H), SourceMemory.

        c = [→h_S ; ←h_1],    s_0 = tanh(c W_init + b_init),    and h_j U_a (RNNsearch)."""
    summary = summary_of(annotations)  # (B, C)
    s0 = np.tanh(summary @ params["init.weight"] + params["init.bias"])  # (B, H)
    projected_keys = annotations @ params["attention.w_key"] if attends else None  # (B, S, A)
    return s0, SourceMemory(annotations, src_mask, summary, projected_keys)


def source_memory_backward(dstate, dmemory, s0, memory, params, grads):
    """dstate ∂L/∂s_0 (B, H), dmemory (SourceGrads, from every step) -> ∂L/∂h (B, S, C);
    adds the gradients of W_init, b_init and U_a to ``grads``."""
    dannotations = dmemory.annotations  # (B, S, C)
    if memory.projected_keys is not None:
        # in the forward pass this was: projected_keys = h U_a, once for all steps
        C, A = memory.annotations.shape[2], memory.projected_keys.shape[2]
        dannotations += dmemory.projected_keys @ params["attention.w_key"].T
        grads["attention.w_key"] = memory.annotations.reshape(-1, C).T @ dmemory.projected_keys.reshape(-1, A)
    # in the forward pass this was: s_0 = tanh(c W_init + b_init)
    dpre = dstate * (1.0 - s0 * s0)  # (B, H)
    grads["init.weight"] = memory.summary.T @ dpre
    grads["init.bias"] = dpre.sum(axis=0)
    dsummary = dmemory.summary + dpre @ params["init.weight"].T  # (B, C)
    # in the forward pass this was: c = [→h_S ; ←h_1]
    H = dsummary.shape[1] // 2
    dannotations[:, -1, :H] += dsummary[:, :H]
    dannotations[:, 0, H:] += dsummary[:, H:]
    return dannotations


# --- one decoder step ------------------------------------------------------------------------


def context_forward(params, state, memory):
    """state s_{i-1} (N, H) -> context c_i (N, C), cache (None for RNNenc).

    RNNsearch: the additive alignment model with s_{i-1} as the one query, then
    α = softmax over the real source words and c_i = Σ_j α_ij h_j;
    RNNenc: the fixed summary, every step the same."""
    if memory.projected_keys is None:
        return memory.summary, None
    scores, cache_scores = alignment_forward(
        state, memory.projected_keys, params["attention.w_query"], params["attention.w_score"]
    )  # (N, S)
    context, cache_average = softmax_average_forward(
        scores[:, None], memory.annotations, memory.src_mask[:, None]
    )  # (N, 1, C)
    return context[:, 0], (cache_scores, cache_average)


def context_backward(dcontext, cache, grads, dmemory):
    """dcontext (N, C) -> ∂L/∂s_{i-1} through the alignment (N, H), or 0 for RNNenc;
    adds into ``dmemory`` and into the gradients of W_a and v."""
    if cache is None:
        dmemory.summary += dcontext
        return 0.0
    # in the forward pass this was: c_i = Σ_j softmax_j(e_ij) h_j
    cache_scores, cache_average = cache
    dscores, dvalues = softmax_average_backward(dcontext[:, None], cache_average)  # (N, 1, S), (N, S, C)
    dmemory.annotations += dvalues
    # in the forward pass this was: e_ij = vᵀ tanh(s_{i-1} W_a + h_j U_a)
    dquery, dkeys_step, dw_query, dw_score = alignment_backward(dscores[:, 0], cache_scores)
    dmemory.projected_keys += dkeys_step
    grads["attention.w_query"] += dw_query
    grads["attention.w_score"] += dw_score
    return dquery


def decoder_step_forward(params, embedded, state, memory):
    """embedded E y_{i-1} (N, E), state s_{i-1} (N, H) -> s_i (N, H), features (N, H+E+C), cache.

        s_i = GRU([E y_{i-1} ; c_i], s_{i-1}),    features = [s_i ; E y_{i-1} ; c_i]"""
    dec = subtree(params, "decoder")
    context, cache_context = context_forward(params, state, memory)  # (N, C)
    gru_input = np.concatenate([embedded, context], axis=1)  # (N, E+C)
    input_part = gru_input @ dec["w_input"] + dec["b_input"]  # (N, 3H)
    new_state, cache_cell = gru_cell_forward(input_part, state, dec["w_hidden"], dec["b_hidden"])  # (N, H)
    features = np.concatenate([new_state, embedded, context], axis=1)  # (N, H+E+C)
    return new_state, features, (gru_input, cache_context, cache_cell)


def decoder_step_backward(dfeatures, dstate, cache, params, grads, dmemory):
    """dfeatures (N, H+E+C) of step i, dstate ∂L/∂s_i from step i+1 (N, H)
    -> ∂L/∂s_{i-1} (N, H), ∂L/∂(E y_{i-1}) (N, E); adds into ``grads`` and ``dmemory``."""
    gru_input, cache_context, cache_cell = cache
    H, E = dstate.shape[1], params["tgt_embed.weight"].shape[1]
    # in the forward pass this was: features = [s_i ; E y_{i-1} ; c_i]
    dstate = dstate + dfeatures[:, :H]
    dembedded = dfeatures[:, H : H + E]  # (N, E)
    dcontext = dfeatures[:, H + E :]  # (N, C)
    # in the forward pass this was: s_i = GRU(input_part, s_{i-1})
    dinput_part, dstate, dw_hidden, db_hidden = gru_cell_backward(dstate, cache_cell)
    grads["decoder.w_hidden"] += dw_hidden
    grads["decoder.b_hidden"] += db_hidden
    # in the forward pass this was: input_part = [E y_{i-1} ; c_i] W_i + b_i
    grads["decoder.w_input"] += gru_input.T @ dinput_part
    grads["decoder.b_input"] += dinput_part.sum(axis=0)
    dgru_input = dinput_part @ params["decoder.w_input"].T  # (N, E+C)
    dembedded = dembedded + dgru_input[:, :E]
    dcontext = dcontext + dgru_input[:, E:]  # (N, C)
    dstate += context_backward(dcontext, cache_context, grads, dmemory)
    return dstate, dembedded


# --- the whole decoder: T steps, then the readout ----------------------------------------------


def decoder_forward(params, y, s0, memory):
    """y E y_{i-1} for every step (B, T, E), s_0 (B, H) -> features (B, T, H+E+C), step caches."""
    state, features, step_caches = s0, [], []
    for i in range(y.shape[1]):
        state, step_features, step_cache = decoder_step_forward(params, y[:, i], state, memory)
        features.append(step_features)
        step_caches.append(step_cache)
    return np.stack(features, axis=1), step_caches  # (B, T, H+E+C)


def decoder_backward(dfeatures, s0, memory, step_caches, params, grads):
    """dfeatures (B, T, H+E+C) -> ∂L/∂y (B, T, E), ∂L/∂h (B, S, C): backpropagation through
    time, the last step first; then s_0, c and h U_a, which every step read."""
    B, T, _ = dfeatures.shape
    dmemory = SourceGrads(memory, dfeatures.dtype)
    dy = np.zeros((B, T, params["tgt_embed.weight"].shape[1]), dtype=dfeatures.dtype)  # (B, T, E)
    dstate = np.zeros_like(s0, dtype=dfeatures.dtype)  # (B, H): ∂L/∂s_i through step i+1
    for i in reversed(range(T)):
        dstate, dy[:, i] = decoder_step_backward(dfeatures[:, i], dstate, step_caches[i], params, grads, dmemory)
    return dy, source_memory_backward(dstate, dmemory, s0, memory, params, grads)


class EncodeCache(NamedTuple):
    embed: object  # the source embedding's cache
    drop: object  # the dropout's cache
    encoder: object  # the bidirectional GRU's cache


class DecodeCache(NamedTuple):
    embed: object  # the target embedding's cache
    drop: object  # the dropout's cache
    s0: np.ndarray  # (B, H)
    memory: SourceMemory
    steps: list  # T decoder-step caches
    features: np.ndarray  # (B, T, H+E+C)


class RNNEncoderDecoder:
    """RNNenc or RNNsearch (config.architecture). ``params`` and ``grads``: dicts of arrays."""

    src_embed_key = "src_embed.weight"
    tgt_embed_key = "tgt_embed.weight"

    def __init__(self, config: RNNConfig, params, backend):
        self.config = config
        # the recurrence is written in NumPy; whatever backend was asked for, it runs there
        self.backend = backend
        self.xp = np
        self.params = {key: np.asarray(value) for key, value in params.items()}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.attends = config.architecture == "rnnsearch"

    def num_parameters(self):
        return count_parameters(self.params)

    # --- forward -------------------------------------------------------------------------

    def encode(self, src, rng=None):
        """src (B, S) -> annotations (B, S, C), src_mask (B, S) bool, cache."""
        check_id_matrix(src, "source ids")
        src = np.asarray(src)
        src_mask = src != self.config.pad_id  # (B, S)
        x, cache_embed = embedding_forward(src, self.params[self.src_embed_key])  # (B, S, E)
        x, cache_drop = dropout_forward(x, self.config.dropout, rng)  # (B, S, E)
        annotations, cache_encoder = bidirectional_forward(x, src_mask, subtree(self.params, "encoder"))  # (B, S, C)
        return annotations, src_mask, EncodeCache(cache_embed, cache_drop, cache_encoder)

    def decode(self, tgt_in, annotations, src_mask, rng=None):
        """tgt_in (B, T), annotations (B, S, C) -> logits (B, T, V), cache."""
        check_id_matrix(tgt_in, "target ids")
        tgt_in = np.asarray(tgt_in)
        if tgt_in.shape[0] != annotations.shape[0]:
            raise ValueError(f"target batch {tgt_in.shape[0]} does not match source batch {annotations.shape[0]}")
        y, cache_embed = embedding_forward(tgt_in, self.params[self.tgt_embed_key])  # (B, T, E)
        y, cache_drop = dropout_forward(y, self.config.dropout, rng)  # (B, T, E)
        s0, memory = source_memory_forward(self.params, annotations, src_mask, self.attends)  # (B, H)
        features, step_caches = decoder_forward(self.params, y, s0, memory)  # (B, T, H+E+C)
        # the readout does not feed the recurrence: one matmul for all T steps
        logits = features @ self.params["output.weight"] + self.params["output.bias"]  # (B, T, V)
        return logits, DecodeCache(cache_embed, cache_drop, s0, memory, step_caches, features)

    def forward(self, src, tgt_in, rng=None):
        """src (B, S), tgt_in (B, T) -> logits (B, T, V), cache."""
        annotations, src_mask, cache_encode = self.encode(src, rng)
        logits, cache_decode = self.decode(tgt_in, annotations, src_mask, rng)
        return logits, (cache_encode, cache_decode)

    # --- backward ------------------------------------------------------------------------

    def backward(self, dlogits, cache):
        """dlogits (B, T, V) -> fills self.grads (overwriting them) and returns it; the
        gradient of the scaled source embeddings is kept in self.input_grads["src"]."""
        encode, decode = cache
        params, pad_id = self.params, self.config.pad_id
        grads = {key: np.zeros_like(value) for key, value in params.items()}
        B, T, _ = dlogits.shape
        # in the forward pass this was: logits = features W_out + b_out
        width = decode.features.shape[2]
        grads["output.weight"] = decode.features.reshape(-1, width).T @ dlogits.reshape(B * T, -1)  # (H+E+C, V)
        grads["output.bias"] = dlogits.reshape(B * T, -1).sum(axis=0)  # (V,)
        dfeatures = dlogits @ params["output.weight"].T  # (B, T, H+E+C)
        # the decoder's steps, last first, then s_0 and c
        dy, dannotations = decoder_backward(dfeatures, decode.s0, decode.memory, decode.steps, params, grads)
        # the target embeddings
        dy = dropout_backward(dy, decode.drop)  # (B, T, E)
        grads[self.tgt_embed_key] = embedding_backward(dy, decode.embed, pad_id)
        # the encoder, then the source embeddings
        dx, encoder_grads = bidirectional_backward(dannotations, encode.encoder)  # (B, S, E)
        for key, value in encoder_grads.items():
            grads[f"encoder.{key}"] = value
        dx = dropout_backward(dx, encode.drop)  # (B, S, E)
        grads[self.src_embed_key] = embedding_backward(dx, encode.embed, pad_id)
        self.input_grads = {"src": dx, "tgt": dy}
        for key, value in params.items():
            self.grads[key] = grads[key].astype(value.dtype, copy=False)
        return self.grads

    def loss(self, src, tgt_in, tgt_out, smoothing=0.0, rng=None):
        """The mean label-smoothed loss, forward only (for validation)."""
        logits, _ = self.forward(src, tgt_in, rng)
        loss, _ = cross_entropy_forward(logits, np.asarray(tgt_out), self.config.pad_id, smoothing)
        return float(loss)

    def loss_and_grads(self, src, tgt_in, tgt_out, smoothing=0.0, rng=None):
        """One forward and backward: returns the loss, leaves the gradients in self.grads."""
        logits, cache = self.forward(src, tgt_in, rng)
        loss, cache_loss = cross_entropy_forward(logits, np.asarray(tgt_out), self.config.pad_id, smoothing)
        self.backward(cross_entropy_backward(cache_loss), cache)
        return float(loss)

    # --- inspection and decoding ----------------------------------------------------------

    def attention_maps(self, cache):
        """{"encoder": [], "decoder_self": [], "cross": [(B, 1, T, S)]}: RNNsearch's α_ij as
        one layer of one head (RNNenc has none: an empty list)."""
        if not self.attends:
            return {"encoder": [], "decoder_self": [], "cross": []}
        step_caches = cache[1].steps
        weights = np.stack([attention_probs(cache_context) for _, cache_context, _ in step_caches], axis=1)  # (B, T, S)
        return {"encoder": [], "decoder_self": [], "cross": [weights[:, None]]}

    def encoder_attention(self, src):
        """The encoder has no attention: (0, 1, S, S) for the trace."""
        return np.zeros((0, 1, src.shape[1], src.shape[1]))

    def make_stepper(self, annotations, src_mask, beam_size=1):
        return RNNStepper(self, annotations, src_mask, beam_size)


def attention_probs(cache_context):
    """The α (N, S) of one step's additive attention, from its cache."""
    _, cache_average = cache_context
    return attention_weights(cache_average)[:, 0]  # (N, S)


class RNNStepper:
    """The decoder one step at a time, for greedy and beam search (decode.py).

    Its state is the whole "cache": s_{i-1} per row (N, H), with each row's own copy of the
    source memory (annotations (N, S, C) and the rest), so reordering rows as beams fork is
    one indexing of each.
    step(last_ids) -> logits (N, V), {"self": [], "cross": [α (N, 1, S)] or []}.
    """

    def __init__(self, model, annotations, src_mask, beam_size=1):
        self.model = model
        annotations = np.repeat(annotations, beam_size, axis=0)  # (N, S, C)
        src_mask = np.repeat(src_mask, beam_size, axis=0)  # (N, S)
        self.state, self.memory = source_memory_forward(model.params, annotations, src_mask, model.attends)  # (N, H)

    def step(self, last_ids):
        model = self.model
        embedded, _ = embedding_forward(np.asarray(last_ids)[:, None], model.params[model.tgt_embed_key])  # (N, 1, E)
        self.state, features, (_, cache_context, _) = decoder_step_forward(
            model.params, embedded[:, 0], self.state, self.memory
        )  # (N, H), (N, H+E+C)
        logits = features @ model.params["output.weight"] + model.params["output.bias"]  # (N, V)
        cross = [attention_probs(cache_context)[:, None]] if model.attends else []  # (N, 1, S)
        return logits, {"self": [], "cross": cross}

    def reorder(self, rows, sentences):
        self.state, self.memory = self.state[rows], self.memory.rows(rows)


def make_rnn_model(config: RNNConfig, seed=0, backend="numpy", params=None):
    """Build RNNenc or RNNsearch from its config: the one builder (as model.make_model)."""
    if isinstance(backend, str) or backend is None:
        backend = backends.get(backend)
    return RNNEncoderDecoder(config, params_for(config, seed, params, param_shapes, init_params), backend)
