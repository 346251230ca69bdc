"""Cheaper attention: approximations of softmax(Q·Kᵀ/√Dh)·V that avoid the (T, S) matrix.

One module per method, each a forward directly above its backward, checked in float64
against finite differences and against exact attention in the limits where it must be
exact (tests/test_approx.py, tests/test_banded.py); chapter 13 of the book measures them.

    linformer   low rank along the sequence: K and V projected to r rows (Wang et al., 2020)
    performer   FAVOR+: positive orthogonal random features, bidirectional and causal
                (Choromanski et al., 2021)
    nystrom     Nyströmformer: segment-mean landmarks and an iterative pseudo-inverse
                (Xiong et al., 2021)
    sampling    m sampled keys per query block, reweighted by the proposal
    banded      local attention, only the band |t − s| ≤ w computed (csrc/banded.pyx)
    core        the switch: a backend whose attention core is one of the above, for the
                model (ModelConfig.encoder_attention / decoder_attention)
"""
