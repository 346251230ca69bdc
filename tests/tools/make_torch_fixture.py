"""Write the PyTorch fixture that the NumPy model must agree with (tests/test_torch_agreement.py).

It builds torch.nn.Transformer, with embeddings (scaled by √D), sinusoidal positional
encoding and an output projection around it, on a small float64 config (2+2 layers, D=16,
4 heads, F=32, a vocabulary of 11, dropout 0), runs one padded batch of unequal lengths
forward and backward with label-smoothed cross-entropy, and saves the weights (renamed to
minitransformer's keys and layout), the inputs, the logits, the loss and every gradient.

Regenerate (needs PyTorch; a CPU build is enough):

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python tests/tools/make_torch_fixture.py

It writes tests/fixtures/torch_postnorm.npz and tests/fixtures/torch_prenorm.npz. The
project's tests read those files and never import torch.

Two details make the models the same function:
- nn.Transformer always adds a final LayerNorm after each stack. That is right for
  pre-norm; for the paper's post-norm we remove it (encoder.norm = decoder.norm = None),
  and minitransformer's ModelConfig.final_norm follows pre_norm.
- PyTorch stores Linear weights as (out, in) and computes x·Wᵀ; minitransformer stores
  (in, out) and computes x·W, so matrices are transposed on the way out. The packed
  in_proj_weight (3D, D) of nn.MultiheadAttention is split into W_q, W_k, W_v.
"""

import json
import math
import pathlib

import numpy as np
import torch
from torch import nn

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
CONFIG = dict(
    src_vocab_size=11,
    tgt_vocab_size=11,
    d_model=16,
    n_heads=4,
    d_ff=32,
    n_encoder_layers=2,
    n_decoder_layers=2,
    dropout=0.0,
    max_len=32,
    tie_output=False,
    share_embeddings=False,
    pad_id=0,
    layernorm_eps=1e-5,
    dtype="float64",
)
SMOOTHING = 0.1
BOS = 2


def sinusoidal_table(max_len, d_model):
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class TorchTransformer(nn.Module):
    def __init__(self, pre_norm):
        super().__init__()
        c = CONFIG
        self.d_model = c["d_model"]
        self.src_embed = nn.Embedding(c["src_vocab_size"], c["d_model"], padding_idx=c["pad_id"])
        self.tgt_embed = nn.Embedding(c["tgt_vocab_size"], c["d_model"], padding_idx=c["pad_id"])
        self.transformer = nn.Transformer(
            d_model=c["d_model"],
            nhead=c["n_heads"],
            num_encoder_layers=c["n_encoder_layers"],
            num_decoder_layers=c["n_decoder_layers"],
            dim_feedforward=c["d_ff"],
            dropout=c["dropout"],
            layer_norm_eps=c["layernorm_eps"],
            batch_first=True,
            norm_first=pre_norm,
        )
        if not pre_norm:
            self.transformer.encoder.norm = None
            self.transformer.decoder.norm = None
        self.generator = nn.Linear(c["d_model"], c["tgt_vocab_size"])
        self.register_buffer("positional", sinusoidal_table(c["max_len"], c["d_model"]))

    def forward(self, src, tgt_in):
        pad = CONFIG["pad_id"]
        scale = math.sqrt(self.d_model)
        x = self.src_embed(src) * scale + self.positional[: src.shape[1]]
        y = self.tgt_embed(tgt_in) * scale + self.positional[: tgt_in.shape[1]]
        length = tgt_in.shape[1]
        future = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)  # True = masked
        hidden = self.transformer(
            x,
            y,
            tgt_mask=future,
            src_key_padding_mask=src == pad,
            tgt_key_padding_mask=tgt_in == pad,
            memory_key_padding_mask=src == pad,
        )
        return self.generator(hidden)


def to_minitransformer(module):
    """{minitransformer key: array} for every parameter of the torch model."""
    named = {name: p.detach().numpy().copy() for name, p in module.named_parameters()}
    return rename(named)


def rename(named):
    out = {}
    D = CONFIG["d_model"]

    def attention(ours, theirs):
        w_in, b_in = named[f"{theirs}.in_proj_weight"], named[f"{theirs}.in_proj_bias"]
        for i, name in enumerate("qkv"):
            out[f"{ours}.w_{name}"] = w_in[i * D : (i + 1) * D].T
            out[f"{ours}.b_{name}"] = b_in[i * D : (i + 1) * D]
        out[f"{ours}.w_o"] = named[f"{theirs}.out_proj.weight"].T
        out[f"{ours}.b_o"] = named[f"{theirs}.out_proj.bias"]

    def norm(ours, theirs):
        out[f"{ours}.gamma"] = named[f"{theirs}.weight"]
        out[f"{ours}.beta"] = named[f"{theirs}.bias"]

    def feed_forward(ours, theirs):
        out[f"{ours}.w_1"], out[f"{ours}.b_1"] = named[f"{theirs}.linear1.weight"].T, named[f"{theirs}.linear1.bias"]
        out[f"{ours}.w_2"], out[f"{ours}.b_2"] = named[f"{theirs}.linear2.weight"].T, named[f"{theirs}.linear2.bias"]

    out["src_embed.weight"] = named["src_embed.weight"]
    out["tgt_embed.weight"] = named["tgt_embed.weight"]
    for i in range(CONFIG["n_encoder_layers"]):
        theirs, ours = f"transformer.encoder.layers.{i}", f"encoder.layers.{i}"
        attention(f"{ours}.self_attn", f"{theirs}.self_attn")
        norm(f"{ours}.norm1", f"{theirs}.norm1")
        feed_forward(f"{ours}.ffn", theirs)
        norm(f"{ours}.norm2", f"{theirs}.norm2")
    for i in range(CONFIG["n_decoder_layers"]):
        theirs, ours = f"transformer.decoder.layers.{i}", f"decoder.layers.{i}"
        attention(f"{ours}.self_attn", f"{theirs}.self_attn")
        norm(f"{ours}.norm1", f"{theirs}.norm1")
        attention(f"{ours}.cross_attn", f"{theirs}.multihead_attn")
        norm(f"{ours}.norm2", f"{theirs}.norm2")
        feed_forward(f"{ours}.ffn", theirs)
        norm(f"{ours}.norm3", f"{theirs}.norm3")
    if "transformer.encoder.norm.weight" in named:
        norm("encoder.norm", "transformer.encoder.norm")
        norm("decoder.norm", "transformer.decoder.norm")
    out["generator.weight"] = named["generator.weight"]
    out["generator.bias"] = named["generator.bias"]
    return {key: np.ascontiguousarray(value) for key, value in out.items()}


def batch():
    """A padded batch of unequal lengths, clear of the special ids 0-3 but for BOS."""
    generator = torch.Generator().manual_seed(0)
    src_lengths, tgt_lengths = [7, 5, 2], [6, 3, 5]
    src = torch.zeros(3, max(src_lengths), dtype=torch.long)
    tgt = torch.zeros(3, max(tgt_lengths) + 1, dtype=torch.long)
    for row, (s_len, t_len) in enumerate(zip(src_lengths, tgt_lengths)):
        src[row, :s_len] = torch.randint(4, CONFIG["src_vocab_size"], (s_len,), generator=generator)
        tgt[row, 0] = BOS
        tgt[row, 1 : t_len + 1] = torch.randint(4, CONFIG["tgt_vocab_size"], (t_len,), generator=generator)
    return src, tgt[:, :-1], tgt[:, 1:]


def write_fixture(pre_norm):
    torch.manual_seed(1 if pre_norm else 0)
    torch.set_default_dtype(torch.float64)
    model = TorchTransformer(pre_norm).double()
    # perturb the LayerNorm and bias parameters away from their 1/0 initial values, so the
    # comparison covers every term of their gradients
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.add_(0.1 * torch.randn_like(param))
    model.train()  # dropout is 0; train mode keeps PyTorch off its inference fast path
    src, tgt_in, tgt_out = batch()
    logits = model(src, tgt_in)
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        tgt_out.reshape(-1),
        ignore_index=CONFIG["pad_id"],
        label_smoothing=SMOOTHING,
    )
    loss.backward()
    grads = rename({name: p.grad.numpy().copy() for name, p in model.named_parameters()})
    config = dict(CONFIG, pre_norm=pre_norm, final_norm=pre_norm)
    arrays = {f"param.{key}": value for key, value in to_minitransformer(model).items()}
    arrays.update({f"grad.{key}": value for key, value in grads.items()})
    arrays.update(
        src=src.numpy(),
        tgt_in=tgt_in.numpy(),
        tgt_out=tgt_out.numpy(),
        logits=logits.detach().numpy(),
        loss=np.array(loss.item()),
        config=np.array(json.dumps(config)),
        smoothing=np.array(SMOOTHING),
        torch_version=np.array(torch.__version__),
    )
    name = "torch_prenorm.npz" if pre_norm else "torch_postnorm.npz"
    FIXTURES.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURES / name, **arrays)
    print(f"wrote {FIXTURES / name}: loss {loss.item():.6f}, {len(grads)} gradient tensors")


if __name__ == "__main__":
    write_fixture(pre_norm=False)
    write_fixture(pre_norm=True)
