"""The gated recurrent unit (Cho et al., 2014), and backpropagation through time by hand.

A recurrent layer reads a sentence one word at a time and carries everything it has read
in one state vector h. The GRU decides, per unit, how much of the old state to keep:

    r_t = σ(x_t W_ir + b_ir + h_{t-1} W_hr + b_hr)              reset gate
    z_t = σ(x_t W_iz + b_iz + h_{t-1} W_hz + b_hz)              update gate
    n_t = tanh(x_t W_in + b_in + r_t ⊙ (h_{t-1} W_hn + b_hn))   candidate state
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

This is PyTorch's torch.nn.GRU exactly: the gates are stacked in the order r, z, n in one
(E, 3H) input matrix and one (H, 3H) hidden matrix (PyTorch stores their transposes), and
there are TWO bias vectors, because the reset gate multiplies the hidden part of the
candidate, bias b_hn included, but not its input part. (Cho's paper applies r before the
matrix, W_hn (r ⊙ h); the two variants train alike, and agreement with PyTorch is the
stronger test.) z_t near 1 copies the state through unchanged, which is how a GRU carries
a gradient across many steps where a plain tanh RNN lets it vanish.

Padding by masks: m_t ∈ {0, 1} says whether step t is a real token. A padded step leaves
the state unchanged,

    h_t = m_t · GRU(x_t, h_{t-1}) + (1 − m_t) · h_{t-1},

so with right padding h at the last column is every sentence's state after its own last
word, and a sentence run with padding gives exactly the states it gives alone.

Backward through one step, from dh_t = ∂L/∂h_t (what the layer above sends plus what step
t+1 sent back), with dh' = m_t·dh_t the gradient of the unmasked update:

    dn = dh' ⊙ (1 − z)              dz = dh' ⊙ (h_{t-1} − n)
    da_n = dn ⊙ (1 − n²)            the candidate's pre-activation (tanh' = 1 − tanh²)
    dr = da_n ⊙ (h_{t-1} W_hn + b_hn)
    da_r = dr ⊙ r(1 − r)            da_z = dz ⊙ z(1 − z)        (σ' = σ(1 − σ))
    d(input part)  = [da_r, da_z, da_n]
    d(hidden part) = [da_r, da_z, r ⊙ da_n]
    dh_{t-1} = (1 − m_t)·dh_t + dh' ⊙ z + d(hidden part) W_hᵀ

and the weights, shared by every step, add up their gradient from every step: that sum
over time is all that "backpropagation through time" means. The gradient's size is
limited by the trainer's global-norm clipping (optim/clip.py), which recurrent nets need
most: a product of T Jacobians can grow as fast as it can vanish.

Size letters: B batch, T time steps, E input width, H hidden width (one direction).
"""

from typing import NamedTuple

import numpy as np


def sigmoid(x):
    """σ(x) = 1 / (1 + e^-x), written as ½(1 + tanh(x/2)): no overflow for large |x|."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class CellCache(NamedTuple):
    h_prev: np.ndarray  # (B, H)
    reset: np.ndarray  # (B, H)
    update: np.ndarray  # (B, H)
    candidate: np.ndarray  # (B, H)
    hidden_candidate: np.ndarray  # (B, H): h_{t-1} W_hn + b_hn, what the reset gate multiplied
    mask: np.ndarray | None  # (B, 1) float, or None: every step real
    w_hidden: np.ndarray  # (H, 3H)


def gru_cell_forward(input_part, h_prev, w_hidden, b_hidden, mask=None):
    """One step. input_part (B, 3H) = x_t W_i + b_i (the layer computes it for all steps
    at once), h_prev (B, H), w_hidden (H, 3H), b_hidden (3H,), mask (B,) bool or None
    -> h (B, H), cache."""
    H = h_prev.shape[1]
    hidden_part = h_prev @ w_hidden + b_hidden  # (B, 3H)
    reset = sigmoid(input_part[:, :H] + hidden_part[:, :H])  # (B, H)
    update = sigmoid(input_part[:, H : 2 * H] + hidden_part[:, H : 2 * H])  # (B, H)
    hidden_candidate = hidden_part[:, 2 * H :]  # (B, H)
    candidate = np.tanh(input_part[:, 2 * H :] + reset * hidden_candidate)  # (B, H)
    h = (1.0 - update) * candidate + update * h_prev  # (B, H)
    if mask is not None:
        mask = mask.astype(h.dtype)[:, None]  # (B, 1)
        h = mask * h + (1.0 - mask) * h_prev  # (B, H): a padded step keeps the state
    return h, CellCache(h_prev, reset, update, candidate, hidden_candidate, mask, w_hidden)


def gru_cell_backward(dh, cache):
    """dh (B, H) -> dinput_part (B, 3H), dh_prev (B, H), dw_hidden (H, 3H), db_hidden (3H,)."""
    h_prev, reset, update, candidate, hidden_candidate, mask, w_hidden = cache
    # in the forward pass this was: h = m·h' + (1 − m)·h_prev
    if mask is not None:
        dh_prev = (1.0 - mask) * dh  # (B, H)
        dh = mask * dh  # (B, H): the gradient of h', the unmasked update
    else:
        dh_prev = np.zeros_like(dh)  # (B, H)
    # in the forward pass this was: h' = (1 − z)·n + z·h_prev
    dcandidate = dh * (1.0 - update)  # (B, H)
    dupdate = dh * (h_prev - candidate)  # (B, H)
    dh_prev += dh * update
    # in the forward pass this was: n = tanh(a_n), a_n = input_n + r·hidden_n
    dpre_candidate = dcandidate * (1.0 - candidate * candidate)  # (B, H)
    dreset = dpre_candidate * hidden_candidate  # (B, H)
    dhidden_candidate = dpre_candidate * reset  # (B, H)
    # in the forward pass these were: r = σ(a_r), z = σ(a_z)
    dpre_reset = dreset * reset * (1.0 - reset)  # (B, H)
    dpre_update = dupdate * update * (1.0 - update)  # (B, H)
    dinput_part = np.concatenate([dpre_reset, dpre_update, dpre_candidate], axis=1)  # (B, 3H)
    dhidden_part = np.concatenate([dpre_reset, dpre_update, dhidden_candidate], axis=1)  # (B, 3H)
    # in the forward pass this was: hidden_part = h_prev W_h + b_h
    dh_prev += dhidden_part @ w_hidden.T
    dw_hidden = h_prev.T @ dhidden_part  # (H, 3H)
    db_hidden = dhidden_part.sum(axis=0)  # (3H,)
    return dinput_part, dh_prev, dw_hidden, db_hidden


# --- a layer: the cell unrolled over T steps ----------------------------------------------


def gru_layer_forward(x, mask, params, h0=None):
    """x (B, T, E), mask (B, T) bool or None, params {w_input (E, 3H), w_hidden (H, 3H),
    b_input (3H,), b_hidden (3H,)}, h0 (B, H) or None (zeros) -> states (B, T, H), cache.

    states[:, t] is h_t; with right padding states[:, -1] is each sentence's final state.
    """
    B, T, E = x.shape
    H = params["w_hidden"].shape[0]
    # the input part of every gate does not depend on the recurrence: one matmul for all T
    input_parts = x @ params["w_input"] + params["b_input"]  # (B, T, 3H)
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0  # (B, H)
    states = np.empty((B, T, H), dtype=x.dtype)  # (B, T, H)
    step_caches = []
    for t in range(T):
        h, step_cache = gru_cell_forward(
            input_parts[:, t], h, params["w_hidden"], params["b_hidden"], None if mask is None else mask[:, t]
        )  # (B, H)
        states[:, t] = h
        step_caches.append(step_cache)
    return states, (x, params["w_input"], step_caches)


def gru_layer_backward(dstates, cache):
    """dstates (B, T, H) -> dx (B, T, E), dh0 (B, H), grads {w_input, w_hidden, b_input, b_hidden}.

    Backpropagation through time: walk the steps in reverse, carrying dh from step t to
    step t-1 and adding each step's share of the shared weights' gradient.
    """
    x, w_input, step_caches = cache
    B, T, E = x.shape
    H = dstates.shape[2]
    dinput_parts = np.empty((B, T, 3 * H), dtype=dstates.dtype)  # (B, T, 3H)
    dw_hidden = np.zeros((H, 3 * H), dtype=dstates.dtype)  # (H, 3H)
    db_hidden = np.zeros(3 * H, dtype=dstates.dtype)  # (3H,)
    dh_carry = np.zeros((B, H), dtype=dstates.dtype)  # (B, H): ∂L/∂h_t through step t+1
    for t in reversed(range(T)):
        # h_t went both to the layer above (dstates) and into step t+1 (dh_carry)
        dinput_parts[:, t], dh_carry, dw_step, db_step = gru_cell_backward(dstates[:, t] + dh_carry, step_caches[t])
        dw_hidden += dw_step
        db_hidden += db_step
    # in the forward pass this was: input_parts = x W_i + b_i, for all steps at once
    dx = dinput_parts @ w_input.T  # (B, T, E)
    dw_input = x.reshape(-1, E).T @ dinput_parts.reshape(-1, 3 * H)  # (E, 3H)
    db_input = dinput_parts.reshape(-1, 3 * H).sum(axis=0)  # (3H,)
    grads = {"w_input": dw_input, "w_hidden": dw_hidden, "b_input": db_input, "b_hidden": db_hidden}
    return dx, dh_carry, grads


# --- bidirectional: one layer reads left to right, another right to left -------------------


def bidirectional_forward(x, mask, params):
    """x (B, T, E), mask (B, T) bool (right padding), params {"forward.*", "backward.*"}
    -> annotations (B, T, 2H), cache.

        annotation_j = [→h_j ; ←h_j]

    →h_j has read x_1 … x_j and ←h_j has read x_j … x_S, so annotation j summarizes the
    whole sentence with a focus on the words around j (Bahdanau et al., section 3.2).

    The right-to-left layer runs on the time-reversed input. Reversed, the padding comes
    first, and since padded steps leave the (zero) initial state unchanged, it starts
    reading at each sentence's own last word. Its final state, ←h_1, sits at position 0.
    """
    forward_params = {key[8:]: value for key, value in params.items() if key.startswith("forward.")}
    backward_params = {key[9:]: value for key, value in params.items() if key.startswith("backward.")}
    states_lr, cache_lr = gru_layer_forward(x, mask, forward_params)  # (B, T, H)
    states_rl, cache_rl = gru_layer_forward(x[:, ::-1], mask[:, ::-1], backward_params)  # (B, T, H), reversed time
    annotations = np.concatenate([states_lr, states_rl[:, ::-1]], axis=2)  # (B, T, 2H)
    return annotations, (cache_lr, cache_rl)


def bidirectional_backward(dannotations, cache):
    """dannotations (B, T, 2H) -> dx (B, T, E), grads {"forward.*", "backward.*"}."""
    cache_lr, cache_rl = cache
    H = dannotations.shape[2] // 2
    dx_lr, _, grads_lr = gru_layer_backward(dannotations[:, :, :H], cache_lr)  # (B, T, E)
    # in the forward pass the right-to-left layer saw time reversed, and its states were flipped back
    dx_rl, _, grads_rl = gru_layer_backward(np.ascontiguousarray(dannotations[:, ::-1, H:]), cache_rl)
    grads = {f"forward.{key}": value for key, value in grads_lr.items()}
    grads.update({f"backward.{key}": value for key, value in grads_rl.items()})
    return dx_lr + dx_rl[:, ::-1], grads
