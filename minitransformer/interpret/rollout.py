"""Attention rollout (Abnar & Zuidema, 2020), and one rule to carry it into the decoder.

A residual connection adds each position's own input to what attention mixed in, so a
layer's effective mixing is half attention, half identity; rollout multiplies these
layer by layer to estimate how much each input token reaches each position:

    Â^(l) = ½·Ā^(l) + ½·I                 Ā^(l): the head mean of encoder layer l, (S, S)
    R_enc = Â^(L−1) ·…· Â^(1) · Â^(0)      row i: how encoder output i is made of source tokens

Rows of Ā^(l) sum to 1, so rows of Â and of R_enc do too.

Across to the decoder (the rule used here; Abnar & Zuidema treat encoders only): a step's
cross-attention reads encoder outputs, and encoder output i is, by R_enc, a mixture of the
source tokens, so the step's relevance for the source is its cross-attention pushed through
R_enc:

    R[t, :] = C̄[t, :] · R_enc             C̄ = the head and layer mean of cross-attention (T, S)

The decoder's own self-attention mixes target positions only, which all read the same
memory, so it is left out: it moves no weight between source tokens.

    from minitransformer.interpret.rollout import encoder_rollout, rollout
"""

import numpy as np


def encoder_rollout(encoder_maps):
    """encoder_maps [(H, S, S)] per layer -> R_enc (S, S)."""
    src_len = encoder_maps[0].shape[-1]
    rolled = np.eye(src_len)  # (S, S)
    for probs in encoder_maps:
        mixing = 0.5 * probs.mean(axis=0) + 0.5 * np.eye(src_len)  # (S, S): Â^(l)
        rolled = mixing @ rolled  # (S, S): later layers multiply on the left
    return rolled


def rollout(steps):
    """steps: explain_steps' result -> R (T, S), each row a distribution over the source."""
    cross = np.mean([c.mean(axis=1) for c in steps.cross], axis=0)  # (T, S): C̄
    return cross @ encoder_rollout(steps.encoder)  # (T, S)
