"""Decoding: from source ids to target ids, greedily or with a beam, with a key/value cache.

    import numpy as np
    from minitransformer.decode import beam_search, greedy_decode

    src = np.array([[45, 12, 7, 9], [81, 6, 0, 0]])      # (B, S), padded with pad_id = 0
    greedy_decode(model, src, bos_id=2, eos_id=3, max_len=40)           # [[…], […]]
    beam_search(model, src, bos_id=2, eos_id=3, max_len=40, beam_size=4)

Both return, per sentence, the generated ids without <s> and </s>. The decoder is
autoregressive: step t reads <s> y_0 … y_{t-1} and gives p(y_t | y_<t, x).

    greedy:  y_t = argmax_v p(v | y_<t, x)                  until </s> or max_len tokens
    beam:    keep the K prefixes with the highest Σ log p; set aside those that produce
             </s>; stop when no prefix can still win (see beam_search); return the
             finished hypothesis with the best
                 Σ log p / lp(n),   lp(n) = ((5 + n) / 6)^α         (GNMT's length penalty)
             n counts the generated tokens, </s> included; α = 0 ranks by Σ log p alone.

Size letters: B sentences, K beams, N = B·K decoding rows, S source length, D model width,
H heads, Dh head width, V vocabulary, t the step (also the position of the newest token).

The key/value cache (use_cache=True). Without it, step t pushes the whole prefix of t+1
tokens through the decoder again (use_cache=False does exactly that, through model.decode),
so a sentence of T tokens costs T²/2 position-passes. Two facts remove the repetition:
  - the cross-attention keys and values, memory·W_k and memory·W_v, depend on the source
    only: they are projected once per layer, before the first step;
  - thanks to the causal mask, position j of every layer depends on tokens ≤ j only, so its
    self-attention key and value never change once computed: each step computes them for
    the newest position alone and appends them to that layer's cache.
A step then pushes ONE position through each layer, and gives the same logits as the full
recomputation (up to rounding): tests/test_decode.py checks the tokens are identical.

Two more choices, shared by both paths so that they agree:
  - <pad> and <s> are never generated (their log-probability is set to −∞, not
    renormalized): the model is never trained to emit them, and a generated <pad> would be
    masked as a key by model.decode;
  - finished sentences leave the batch, so the steps get cheaper as sentences end.
Decoding is always in evaluation mode (no dropout).
"""


from typing import NamedTuple

import numpy as np

from .arrays import array_module, to_numpy
from .layers.decoder import decoder_attention_probs

# --- the incremental decoder: one position per step ---------------------------------------


class DecoderCache:
    """What a decoding step reuses, for N = B·K rows (K beams of each of B sentences).

    Rows are sentence-major: row b·K + k is beam k of sentence b.
        self_keys[i], self_values[i]    (N, H, capacity, Dh), positions 0 … length-1 filled
        cross_keys[i], cross_values[i]  (B, H, S, Dh), one per sentence, shared by its beams,
                                        projected from the memory at the first step
        memory (B, S, D), src_mask (B, 1, 1, S)

    model.decode(..., kv_cache=cache) runs the decoder's own layers on one position; each
    multi-head layer asks ``cache.layer(i).self_attention`` or ``.cross_attention`` to attend.
    """

    def __init__(self, model, memory, src_mask, beam_size=1):
        config, xp = model.config, model.xp
        n_sentences, _, d_model = memory.shape
        self.xp = xp
        self.beam_size = beam_size
        self.memory = memory  # (B, S, D)
        self.src_mask = src_mask  # (B, 1, 1, S)
        self.length = 0  # positions already in the self-attention cache
        n_layers, n_heads = config.n_decoder_layers, config.n_heads
        self.cross_keys, self.cross_values = [None] * n_layers, [None] * n_layers
        n_rows, head_dim = n_sentences * beam_size, d_model // n_heads
        # the buffers grow by doubling, so appending a position is amortized O(1)
        capacity = 16
        self.self_keys = [
            xp.zeros((n_rows, n_heads, capacity, head_dim), dtype=memory.dtype) for _ in range(n_layers)
        ]  # each (N, H, capacity, Dh)
        self.self_values = [xp.zeros_like(keys) for keys in self.self_keys]

    def layer(self, i):
        """The two attention caches of decoder layer i."""
        return LayerCache(SelfAttentionCache(self, i), CrossAttentionCache(self, i))

    def append(self, layer, keys, values):
        """Write the newest position's keys and values (N, H, 1, Dh) at index self.length."""
        capacity = self.self_keys[layer].shape[2]
        if self.length == capacity:
            for buffers in (self.self_keys, self.self_values):
                old = buffers[layer]  # (N, H, capacity, Dh)
                buffers[layer] = self.xp.concatenate([old, self.xp.zeros_like(old)], axis=2)  # (N, H, 2·cap, Dh)
        self.self_keys[layer][:, :, self.length] = keys[:, :, 0]
        self.self_values[layer][:, :, self.length] = values[:, :, 0]
        upto = self.length + 1
        return self.self_keys[layer][:, :, :upto], self.self_values[layer][:, :, :upto]  # (N, H, t+1, Dh)

    def reorder(self, rows, sentences):
        """Keep rows ``rows`` (in that order; a row may repeat, as beams fork) and the
        sentences ``sentences`` they belong to, both as indices into the current ones."""
        self.self_keys = [keys[rows] for keys in self.self_keys]
        self.self_values = [values[rows] for values in self.self_values]
        if len(sentences) != self.src_mask.shape[0] or np.any(to_numpy(sentences) != np.arange(len(sentences))):
            self.cross_keys = [None if keys is None else keys[sentences] for keys in self.cross_keys]
            self.cross_values = [None if values is None else values[sentences] for values in self.cross_values]
            self.memory = self.memory[sentences]
            self.src_mask = self.src_mask[sentences]


class LayerCache(NamedTuple):
    self_attention: "SelfAttentionCache"
    cross_attention: "CrossAttentionCache"


class SelfAttentionCache:
    """Causal self-attention, one step: the newest position's key and value are appended,
    and its query attends to every position so far. No mask is needed beyond a local
    window: the cache holds no future positions and no padding."""

    def __init__(self, cache, layer):
        self.cache, self.layer = cache, layer

    def attend(self, q, project, backend, mask):
        """q (N, H, 1, Dh) -> heads (N, H, 1, Dh), weights (N, H, 1, t+1)."""
        new_keys, new_values, _, _ = project()  # (N, H, 1, Dh) each: the newest position's
        keys, values = self.cache.append(self.layer, new_keys, new_values)  # (N, H, t+1, Dh)
        return backend.attention_forward(q, keys, values, mask)


class CrossAttentionCache:
    """Cross-attention, one step: the memory's keys and values are projected once, at the
    first step. The K beams of a sentence share them, so their K queries go into one
    attention call as K query positions, (B, H, K, Dh) against (B, H, S, Dh): the source
    keys are never copied per beam."""

    def __init__(self, cache, layer):
        self.cache, self.layer = cache, layer

    def attend(self, q, project, backend, mask):
        """q (N, H, 1, Dh) -> heads (N, H, 1, Dh), weights (N, H, 1, S)."""
        cache, layer = self.cache, self.layer
        if cache.cross_keys[layer] is None:
            cache.cross_keys[layer], cache.cross_values[layer], _, _ = project()  # (B, H, S, Dh)
        n_rows, n_heads, _, head_dim = q.shape
        beams = cache.beam_size
        grouped = q.reshape(n_rows // beams, beams, n_heads, head_dim).transpose(0, 2, 1, 3)  # (B, H, K, Dh)
        heads, probs = backend.attention_forward(
            grouped, cache.cross_keys[layer], cache.cross_values[layer], mask
        )  # (B, H, K, Dh), (B, H, K, S)
        heads = heads.transpose(0, 2, 1, 3).reshape(n_rows, n_heads, 1, head_dim)  # (N, H, 1, Dh)
        probs = probs.transpose(0, 2, 1, 3).reshape(n_rows, n_heads, 1, -1)  # (N, H, 1, S)
        return heads, probs


def decode_step(model, cache, last_ids):
    """One step of the cached decoder.

    last_ids (N,): the newest token of each row, at position t = cache.length.
    Returns logits (N, V) for the token at t+1, and the attention weights of this step,
    {"self": [(N, H, t+1)] per layer, "cross": [(N, H, S)] per layer}.

    It is model.decode itself, on one position with the cache: the same embedding, the
    same layers (Residual(causal self-attention), Residual(cross-attention),
    Residual(feed-forward) in the config's norm placement), the same final norm and output,
    on the same kernels.
    """
    logits, cache_decode = model.decode(last_ids[:, None], cache.memory, cache.src_mask, kv_cache=cache)
    cache.length += 1
    layers = decoder_attention_probs(cache_decode.decoder)
    attention = {
        "self": [self_probs[:, :, 0] for self_probs, _ in layers],  # (N, H, t+1)
        "cross": [cross_probs[:, :, 0] for _, cross_probs in layers],  # (N, H, S)
    }
    return logits[:, 0], attention  # (N, V)


# --- two steppers with one interface: cached, and the full recomputation -----------------


class CachedStepper:
    """step(last_ids) -> logits (N, V), attention; reorder(rows, sentences)."""

    def __init__(self, model, memory, src_mask, beam_size=1):
        self.model = model
        self.cache = DecoderCache(model, memory, src_mask, beam_size)

    def step(self, last_ids):
        return decode_step(self.model, self.cache, last_ids)

    def reorder(self, rows, sentences):
        self.cache.reorder(rows, sentences)


class FullStepper:
    """The reference: every step runs model.decode on the whole prefix <s> y_0 … y_{t-1}."""

    def __init__(self, model, memory, src_mask, beam_size=1):
        xp = model.xp
        self.model = model
        self.memory = xp.repeat(memory, beam_size, axis=0)  # (N, S, D)
        self.src_mask = xp.repeat(src_mask, beam_size, axis=0)  # (N, 1, 1, S)
        self.prefix = xp.zeros((self.memory.shape[0], 0), dtype=np.int64)  # (N, t)

    def step(self, last_ids):
        xp = self.model.xp
        self.prefix = xp.concatenate([self.prefix, last_ids[:, None].astype(np.int64)], axis=1)  # (N, t+1)
        logits, cache_decode = self.model.decode(self.prefix, self.memory, self.src_mask)  # (N, t+1, V)
        layers = decoder_attention_probs(cache_decode.decoder)
        attention = {
            "self": [self_probs[:, :, -1] for self_probs, _ in layers],  # (N, H, t+1)
            "cross": [cross_probs[:, :, -1] for _, cross_probs in layers],  # (N, H, S)
        }
        return logits[:, -1], attention  # (N, V)

    def reorder(self, rows, sentences):
        self.prefix, self.memory, self.src_mask = self.prefix[rows], self.memory[rows], self.src_mask[rows]


def make_stepper(model, memory, src_mask, beam_size, use_cache):
    if hasattr(model, "make_stepper"):  # a recurrent model: its state is its cache (rnn/model.py)
        return model.make_stepper(memory, src_mask, beam_size)
    stepper = CachedStepper if use_cache else FullStepper
    return stepper(model, memory, src_mask, beam_size)


def forbid_special(model, scores, bos_id):
    """Set the scores of <pad> and <s> to −∞ in place: they are never generated."""
    scores[:, model.config.pad_id] = -np.inf
    scores[:, bos_id] = -np.inf
    return scores


def check_inputs(model, src, max_len):
    """src as the model's array type; max_len clipped to the positional table."""
    src = model.xp.asarray(src)
    if src.ndim != 2 or src.shape[0] == 0:
        raise ValueError(f"src must be a non-empty (B, S) array of ids, got shape {src.shape}")
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    return src, min(int(max_len), model.config.max_len)


# --- greedy search ---------------------------------------------------------------------------


def greedy_decode(model, src, bos_id, eos_id, max_len, use_cache=True, *, on_step=None):
    """src (B, S) ids padded with pad_id -> per sentence, the generated ids without <s>/</s>.

    max_len: the most tokens generated per sentence, </s> included (at most the model's
    config.max_len positions). ``on_step(step, sentences, next_ids, attention)`` is called
    after each step with the sentences still decoding (their indices into src), the token
    each produced and decode_step's attention weights, for the attention trace.
    """
    src, max_len = check_inputs(model, src, max_len)
    xp = model.xp
    memory, src_mask, _ = model.encode(src)  # (B, S, D), (B, 1, 1, S)
    stepper = make_stepper(model, memory, src_mask, 1, use_cache)
    outputs = [[] for _ in range(src.shape[0])]
    sentences = np.arange(src.shape[0])  # the sentences still decoding, one row each
    last_ids = xp.full(src.shape[0], bos_id, dtype=np.int64)  # (N,)
    for step in range(max_len):
        logits, attention = stepper.step(last_ids)  # (N, V)
        # y_t = argmax p(y_t | y_<t, x); the softmax is monotonic, so the logits suffice
        next_ids = forbid_special(model, logits, bos_id).argmax(axis=1)  # (N,)
        next_host = to_numpy(next_ids)
        if on_step is not None:
            on_step(step, sentences, next_host, attention)
        for sentence, token in zip(sentences, next_host):
            if token != eos_id:
                outputs[sentence].append(int(token))
        # a sentence that produced </s> leaves the batch
        going_on = np.flatnonzero(next_host != eos_id)
        if len(going_on) == 0:
            break
        if len(going_on) < len(sentences):
            rows = xp.asarray(going_on)
            stepper.reorder(rows, rows)
            sentences = sentences[going_on]
            next_ids = next_ids[rows]
        last_ids = next_ids
    return outputs


# --- beam search -----------------------------------------------------------------------------


def length_penalty_factor(length, alpha):
    """GNMT's lp(n) = ((5 + n) / 6)^α; α = 0 gives 1, ranking by Σ log p alone."""
    return ((5.0 + length) / 6.0) ** alpha


def log_softmax(logits):
    """logits (N, V) -> log p (N, V) in float64: beam scores add up many of them."""
    xp = array_module(logits)
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, V)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def best_extensions(beam_scores, log_probs, beams):
    """Steps 1 and 2: the 2K best one-token extensions of each sentence's beams, best first.

    beam_scores (B, K) Σ log p of each beam (host), log_probs (N, V) with N = B·K.
    Returns source_beam, token, score, each (B, 2K) on the host: the extension appends
    ``token`` to beam ``source_beam`` and has Σ log p = ``score``.
    """
    xp = array_module(log_probs)
    n_active, vocab_size = beam_scores.shape[0], log_probs.shape[1]
    # 1. every extension of every beam, as one row of K·V candidates per sentence
    candidates = xp.asarray(beam_scores.reshape(-1, 1)) + log_probs  # (N, V)
    candidates = candidates.reshape(n_active, beams * vocab_size)  # (B, K·V)
    # 2. the 2K best, sorted best first (argpartition avoids sorting all K·V)
    n_best = min(2 * beams, beams * vocab_size)
    top = xp.argpartition(-candidates, n_best - 1, axis=1)[:, :n_best]  # (B, 2K)
    top_scores = xp.take_along_axis(candidates, top, axis=1)  # (B, 2K)
    order = xp.argsort(-top_scores, axis=1, kind="stable")  # (B, 2K)
    top = to_numpy(xp.take_along_axis(top, order, axis=1))  # (B, 2K)
    top_scores = to_numpy(xp.take_along_axis(top_scores, order, axis=1))  # (B, 2K)
    return top // vocab_size, top % vocab_size, top_scores


def finish_ended(finished, sentences, beam_tokens, source_beam, top_scores, ends, beams, penalty):
    """Step 3a: the extensions ranked in the first K that end in </s> become finished
    hypotheses (Σ log p / lp(n), Σ log p, ids), appended to ``finished[sentence]``.

    beam_tokens (B, K, t); source_beam, top_scores, ends (B, 2K); penalty = lp(t+1).
    """
    for row, rank in zip(*np.nonzero(ends[:, :beams])):
        ids = beam_tokens[row, source_beam[row, rank]].tolist()
        raw = float(top_scores[row, rank])
        finished[sentences[row]].append((raw / penalty, raw, ids))


def extend_beams(beam_tokens, source_beam, token, top_scores, ends, beams):
    """Step 3b: the K best extensions that do not end in </s> become the new beams.

    2K candidates always hold K such, since at most K of them end in </s>. A stable sort
    on ``ends`` puts them first, keeping their best-first order.
    Returns parent (B, K) the beam each came from, new_tokens (B, K), beam_scores (B, K)
    best first, and beam_tokens (B, K, t+1).
    """
    going_on = np.argsort(ends, axis=1, kind="stable")[:, :beams]  # (B, K)
    parent = np.take_along_axis(source_beam, going_on, axis=1)  # (B, K)
    new_tokens = np.take_along_axis(token, going_on, axis=1)  # (B, K)
    beam_scores = np.take_along_axis(top_scores, going_on, axis=1)  # (B, K), best first
    beam_tokens = np.concatenate(
        [np.take_along_axis(beam_tokens, parent[:, :, None], axis=1), new_tokens[:, :, None]], axis=2
    )  # (B, K, t+1)
    return parent, new_tokens, beam_scores, beam_tokens


def start_beams(n_sentences, beams):
    """The beams before the first step: beam_scores (B, K) and beam_tokens (B, K, 0).

    All K beams start as the same <s>; only beam 0 may extend it (the others score −∞),
    or the K beams would be copies of each other.
    """
    beam_scores = np.full((n_sentences, beams), -np.inf)  # (B, K) Σ log p of each beam
    beam_scores[:, 0] = 0.0
    beam_tokens = np.zeros((n_sentences, beams, 0), dtype=np.int64)  # (B, K, t)
    return beam_scores, beam_tokens


def advance_beams(finished, sentences, beam_scores, beam_tokens, log_probs, eos_id, penalty):
    """Steps 1-3 of one beam-search step, on the host.

    beam_scores (B, K), beam_tokens (B, K, t), log_probs (N, V); penalty = lp(t+1).
    Appends the hypotheses that end in </s> to ``finished``; returns the new beams as
    extend_beams does: parent (B, K), new_tokens (B, K), beam_scores (B, K), beam_tokens (B, K, t+1).
    """
    beams = beam_scores.shape[1]
    source_beam, token, top_scores = best_extensions(beam_scores, log_probs, beams)  # (B, 2K) each
    ends = token == eos_id  # (B, 2K)
    finish_ended(finished, sentences, beam_tokens, source_beam, top_scores, ends, beams, penalty)
    return extend_beams(beam_tokens, source_beam, token, top_scores, ends, beams)


def finish_all(finished, sentences, beam_scores, beam_tokens, penalty):
    """At max_len: every remaining beam becomes a finished hypothesis as it is (no </s>).

    beam_scores (B, K), beam_tokens (B, K, max_len); penalty = lp(max_len).
    """
    for row in range(len(sentences)):
        for beam in range(beam_scores.shape[1]):
            raw = float(beam_scores[row, beam])
            finished[sentences[row]].append((raw / penalty, raw, beam_tokens[row, beam].tolist()))


def sentences_done(finished, sentences, beam_scores, beams, penalty_now, best_possible_penalty):
    """Step 4: which sentences no beam can still win, a bool per row of beam_scores (B, K).

    penalty_now = lp(t+1), best_possible_penalty = lp(max_len).
    """
    done = np.zeros(len(sentences), dtype=bool)
    for row in range(len(sentences)):
        hypotheses = finished[sentences[row]]
        if hypotheses:
            best_final = max(h[0] for h in hypotheses)
            best_beam = beam_scores[row, 0]  # the beams are sorted, best first
            # no beam can beat it any more: exact, since Σ log p only falls
            beaten_for_good = best_final >= best_beam / best_possible_penalty
            # K finished, and the best beam would lose were it to end now (as in Hugging
            # Face's beam search): a heuristic when α > 0; exact when α = 0
            beaten_now = len(hypotheses) >= beams and best_final >= best_beam / penalty_now
            done[row] = beaten_for_good or beaten_now
    return done


def best_hypotheses(finished):
    """Per sentence, the finished hypothesis with the best Σ log p / lp: (ids lists, Σ log p list)."""
    results, scores = [], []
    for hypotheses in finished:
        best = max(hypotheses, key=lambda h: h[0])  # max keeps the first of equals
        results.append(best[2])
        scores.append(best[1])
    return results, scores


def beam_search(
    model, src, bos_id, eos_id, max_len, beam_size=4, length_penalty=0.6, use_cache=True, *, return_scores=False
):
    """src (B, S) ids -> per sentence, the best hypothesis's ids without <s>/</s>.

    All K beams of all B sentences decode together as N = B·K rows. Each step:
      1. scores of every one-token extension: Σ log p of the beam + log p(v)   (B, K·V)
      2. the 2K best extensions of each sentence, best first;            (best_extensions)
      3. those among the first K that end in </s> become finished hypotheses, scored
         Σ log p / lp(n) (finish_ended); the K best that do not end in </s> are the new
         beams (extend_beams);
      4. a sentence is done when no beam can still beat its best finished hypothesis:
         Σ log p only falls as tokens are added, so a beam's final score is at most
         Σ log p / lp(max_len); or, as in Hugging Face's beam search, when K hypotheses
         have finished and the best beam would not win were it to end now, Σ log p / lp(t+1)
         (with α = 0 both rules are exact: the result is the best the beam can reach);
                                                                          (sentences_done)
      5. done sentences leave the batch; the caches follow the surviving beams.
    At max_len the remaining beams are finished as they are (without </s>; finish_all).
    With beam_size=1 this is greedy decoding.

    return_scores=True also returns each result's Σ log p (float, </s> included when
    produced), which score_sequence recomputes with a full forward pass.
    """
    src, max_len = check_inputs(model, src, max_len)
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    xp, beams = model.xp, beam_size
    memory, src_mask, _ = model.encode(src)  # (B, S, D), (B, 1, 1, S)
    stepper = make_stepper(model, memory, src_mask, beams, use_cache)
    n_sentences = src.shape[0]
    finished = [[] for _ in range(n_sentences)]  # (Σ log p / lp, Σ log p, ids) per sentence
    sentences = np.arange(n_sentences)  # the sentences still decoding
    beam_scores, beam_tokens = start_beams(n_sentences, beams)  # (B, K), (B, K, 0)
    last_ids = xp.full(n_sentences * beams, bos_id, dtype=np.int64)  # (N,)
    best_possible_penalty = length_penalty_factor(max_len, length_penalty)
    for step in range(max_len):
        logits, _ = stepper.step(last_ids)  # (N, V)
        log_probs = forbid_special(model, log_softmax(logits), bos_id)  # (N, V)
        penalty_now = length_penalty_factor(step + 1, length_penalty)
        # 1.-3. extend, set aside the hypotheses that end in </s>, keep the K best beams
        parent, new_tokens, beam_scores, beam_tokens = advance_beams(
            finished, sentences, beam_scores, beam_tokens, log_probs, eos_id, penalty_now
        )  # (B, K), (B, K), (B, K), (B, K, t+1)
        # 4. which sentences are done
        if step == max_len - 1:
            finish_all(finished, sentences, beam_scores, beam_tokens, best_possible_penalty)
            break
        done = sentences_done(finished, sentences, beam_scores, beams, penalty_now, best_possible_penalty)
        keep = np.flatnonzero(~done)
        if len(keep) == 0:
            break
        # 5. the caches follow the surviving beams of the surviving sentences
        rows = (keep[:, None] * beams + parent[keep]).reshape(-1)  # (N',)
        stepper.reorder(xp.asarray(rows), xp.asarray(keep))
        sentences, beam_scores = sentences[keep], beam_scores[keep]
        beam_tokens, new_tokens = beam_tokens[keep], new_tokens[keep]
        last_ids = xp.asarray(new_tokens.reshape(-1))  # (N',)
    results, scores = best_hypotheses(finished)
    return (results, scores) if return_scores else results


# --- the model's score of a given output -------------------------------------------------


def score_sequence(model, src, hypotheses, bos_id, eos_id, ended=True):
    """Σ_t log p(y_t | y_<t, x) of each hypothesis, with one full forward pass.

    src (B, S) ids; hypotheses: B lists of ids without <s>/</s>; ended: a bool or B bools,
    whether </s> followed (its log-probability is then part of the sum).
    Returns a float64 array (B,). The same model score that beam_search ranks by (α = 0).
    """
    xp, pad_id = model.xp, model.config.pad_id
    src = xp.asarray(src)
    if isinstance(ended, bool):
        ended = [ended] * len(hypotheses)
    targets = [list(ids) + ([eos_id] if end else []) for ids, end in zip(hypotheses, ended)]
    length = max(1, max(len(target) for target in targets))
    tgt_in = np.full((len(targets), length), pad_id, dtype=np.int64)  # (B, T)
    tgt_out = np.full((len(targets), length), pad_id, dtype=np.int64)  # (B, T)
    for row, target in enumerate(targets):
        tgt_in[row, : len(target)] = [bos_id] + target[:-1]
        tgt_out[row, : len(target)] = target
    logits, _ = model.forward(src, xp.asarray(tgt_in))  # (B, T, V)
    log_probs = to_numpy(log_softmax(logits.reshape(-1, logits.shape[-1]))).reshape(logits.shape)  # (B, T, V)
    picked = np.take_along_axis(log_probs, tgt_out[..., None], axis=2)[..., 0]  # (B, T)
    valid = np.zeros_like(picked, dtype=bool)
    for row, target in enumerate(targets):
        valid[row, : len(target)] = True
    return (picked * valid).sum(axis=1)


# --- many sentences: batches of similar length ----------------------------------------------

DECODE_BATCH = 64  # sentences decoded together, by default


def generation_budget(src_len, model_max_len, asked=None):
    """The most pieces to generate: ``asked``, else room for a translation somewhat longer than
    its source (2·S + 10), and never past the model's positions."""
    return min(asked if asked is not None else 2 * src_len + 10, model_max_len)


def decode_batches(model, sources, bos_id, eos_id, pad_id, batch_size=DECODE_BATCH, beam_size=1,
                   length_penalty=0.0, use_cache=True, max_len=None):
    """sources: id lists (non-empty) -> the generated ids of each, in the same order.

    Sorted by length first, so a batch holds sentences of similar length: less padding,
    and short batches finish early. Greedy for beam_size 1, else beam search.
    """
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outputs = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(sources[i]) for i in rows)
        src = np.full((len(rows), width), pad_id, dtype=np.int64)  # (B, S)
        for row, i in enumerate(rows):
            src[row, : len(sources[i])] = sources[i]
        budget = generation_budget(width, model.config.max_len, max_len)
        if beam_size == 1:
            generated = greedy_decode(model, src, bos_id, eos_id, budget, use_cache)
        else:
            generated = beam_search(model, src, bos_id, eos_id, budget, beam_size, length_penalty, use_cache)
        for i, ids in zip(rows, generated):
            outputs[i] = ids
    return outputs
