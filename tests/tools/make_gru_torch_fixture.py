"""Write the PyTorch fixture that minitransformer/rnn/gru.py must agree with (tests/test_rnn_torch_agreement.py).

Two float64 cases, forward and backward:
- "uni": a one-direction torch.nn.GRU (E=4, H=3) over a batch of 3 sentences of 5 steps,
  from a random initial state h0, with a random output gradient and a random gradient on
  the final state h_n;
- "bi": a bidirectional torch.nn.GRU over sentences of lengths 5, 2, 4 padded to 5, given
  as a PackedSequence (so PyTorch's right-to-left direction starts at each sentence's own
  last word, as the masks of gru.py do); the output gradient is zero at padded positions.

Regenerate (needs PyTorch; a CPU build is enough):

    .venv/bin/pip install torch==2.13.0
    .venv/bin/python tests/tools/make_gru_torch_fixture.py

It writes tests/fixtures/torch_gru.npz; the tests read it and never import torch.

The layout: PyTorch stores weight_ih_l0 (3H, E) and weight_hh_l0 (3H, H) with the gates
stacked in the order r, z, n, and computes x·Wᵀ; gru.py keeps the same order and stores
the transposes, w_input (E, 3H) and w_hidden (H, 3H). The two bias vectors, bias_ih and
bias_hh, are kept apart: the reset gate multiplies b_hn but not b_in.
"""

import pathlib

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
B, T, E, H = 3, 5, 4, 3
LENGTHS = [5, 2, 4]


def weights_of(gru, suffix, prefix, out):
    """torch's (3H, ·) weights -> minitransformer's (·, 3H) under ``prefix``; and their grads."""
    for torch_name, name in (("weight_ih", "w_input"), ("weight_hh", "w_hidden"),
                             ("bias_ih", "b_input"), ("bias_hh", "b_hidden")):
        tensor = getattr(gru, f"{torch_name}_l0{suffix}")
        value, grad = tensor.detach().numpy(), tensor.grad.numpy()
        out[f"{prefix}param.{name}"] = value.T if value.ndim == 2 else value
        out[f"{prefix}grad.{name}"] = grad.T if grad.ndim == 2 else grad


def main():
    torch.manual_seed(0)
    out = {}

    # --- one direction, from a given initial state ------------------------------------
    gru = nn.GRU(E, H, batch_first=True, dtype=torch.float64)
    x = torch.randn(B, T, E, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=torch.float64, requires_grad=True)
    dout, dh_n = torch.randn(B, T, H, dtype=torch.float64), torch.randn(1, B, H, dtype=torch.float64)
    states, h_n = gru(x, h0)
    ((states * dout).sum() + (h_n * dh_n).sum()).backward()
    out.update({"uni.x": x.detach().numpy(), "uni.h0": h0.detach().numpy()[0], "uni.dout": dout.numpy(),
                "uni.dh_n": dh_n.numpy()[0], "uni.states": states.detach().numpy(), "uni.h_n": h_n.detach().numpy()[0],
                "uni.grad.x": x.grad.numpy(), "uni.grad.h0": h0.grad.numpy()[0]})
    weights_of(gru, "", "uni.", out)

    # --- bidirectional, padded, as a PackedSequence ------------------------------------
    gru = nn.GRU(E, H, batch_first=True, bidirectional=True, dtype=torch.float64)
    x = torch.randn(B, T, E, dtype=torch.float64)
    valid = torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]  # (B, T)
    x = (x * valid[..., None]).requires_grad_(True)
    dout = torch.randn(B, T, 2 * H, dtype=torch.float64) * valid[..., None]
    dh_n = torch.randn(2, B, H, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)
    packed_out, h_n = gru(packed)
    annotations, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=T)  # (B, T, 2H), zeros when padded
    ((annotations * dout).sum() + (h_n * dh_n).sum()).backward()
    out.update({"bi.x": x.detach().numpy(), "bi.lengths": np.array(LENGTHS), "bi.dout": dout.numpy(),
                "bi.dh_n": dh_n.numpy(), "bi.annotations": annotations.detach().numpy(),
                "bi.h_n": h_n.detach().numpy(), "bi.grad.x": x.grad.numpy()})
    weights_of(gru, "", "bi.forward.", out)
    weights_of(gru, "_reverse", "bi.backward.", out)
    out["torch_version"] = np.array(torch.__version__)

    FIXTURES.mkdir(exist_ok=True)
    np.savez(FIXTURES / "torch_gru.npz", **out)
    print(f"wrote {FIXTURES / 'torch_gru.npz'} ({len(out)} arrays, torch {torch.__version__})")


if __name__ == "__main__":
    main()
