"""The model learns: it overfits a tiny reverse task with the hand-written gradients.

64 random sequences of 6 tokens; the target is the sequence reversed. A 1+1-layer model
(D=32, 4 heads) trained with Adam, the warmup schedule (peak lr ≈ 0.016) and clipping must bring the
training loss below 0.15 within 250 steps and predict every target token (teacher
forced). Reversal needs attention: output position t must find source position L−1−t.
"""

import numpy as np

from minitransformer.config import ModelConfig
from minitransformer.model import make_model
from minitransformer.batching import Batch
from minitransformer.optim import Adam
from minitransformer.step import Recipe, train_step

STEPS = 250
LOSS_BOUND = 0.15


def test_overfits_a_reverse_task():
    rng = np.random.default_rng(0)
    vocab, length, count, bos, eos = 12, 6, 64, 2, 3
    sequences = rng.integers(4, vocab, size=(count, length))
    src = sequences
    tgt = np.concatenate([np.full((count, 1), bos), sequences[:, ::-1], np.full((count, 1), eos)], axis=1)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    config = ModelConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=32, n_heads=4, d_ff=64,
        n_encoder_layers=1, n_decoder_layers=1, dropout=0.0, max_len=16,
    )
    model = make_model(config, seed=0)
    optimizer = Adam(model.params)
    batch = Batch(src, tgt_in, tgt_out, np.arange(count), src.size, tgt_out.size)
    recipe = Recipe(d_model=config.d_model, warmup_steps=30, lr_factor=0.5, label_smoothing=0.0, clip_norm=1.0)
    # the trainer's own step (minitransformer/step.py), without dropout
    losses = [train_step(model, batch, optimizer, step, recipe).loss for step in range(1, STEPS + 1)]
    assert losses[0] > 2.0, f"an untrained model should be near log(V) = {np.log(vocab):.2f}, got {losses[0]:.3f}"
    assert losses[-1] < LOSS_BOUND, f"loss {losses[-1]:.4f} after {STEPS} steps, expected < {LOSS_BOUND}"
    logits, _ = model.forward(src, tgt_in)
    accuracy = float((logits.argmax(-1) == tgt_out).mean())
    assert accuracy == 1.0, f"teacher-forced token accuracy {accuracy:.3f}"
