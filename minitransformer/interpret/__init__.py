"""Is attention an explanation? Every way of reading a trained model's attention, and the
means to score each one against the toy corpus's gold word alignments (chapter 11).

One method a file; each gradient comes from the model's own hand-written backward.

    words.py                 subword pieces -> words, one documented rule
    gates.py                 a gate on each head's output: head importance, ∂L/∂A, masking
    steps.py                 one forward/backward that explains every output step at once
    raw.py                   raw attention per layer and head, and the head mean
    rollout.py               attention rollout through the encoder and across to the decoder
    grad_attention.py        gradient-weighted attention, (∂L/∂A ⊙ A)+
    integrated_gradients.py  integrated gradients from a zero-embedding baseline
    weight_gradient.py       ∂A[l, h, q, k] / ∂(input embeddings)
    importance.py            head importance, E_x |∂L(x)/∂g_h| per sentence, normalized per layer
    ablation.py              BLEU with heads masked, and pruning curves
    clustering.py            heads grouped by Jensen–Shannon distance, 2-D map, pattern labels
    aer.py                   alignments from attributions, and the alignment error rate
    faithfulness.py          deletion curves
    methods.py               every method on one sentence, as word-level (T, S) matrices
"""
