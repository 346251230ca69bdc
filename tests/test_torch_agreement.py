"""The NumPy model agrees with torch.nn.Transformer, through fixtures that PyTorch wrote.

tests/tools/make_torch_fixture.py built nn.Transformer (float64, 2+2 layers, D=16, 4 heads,
F=32, vocabulary 11, dropout 0) with embeddings, positional encoding and an output
projection around it, ran a padded batch of unequal lengths with label-smoothed
cross-entropy, and saved weights, inputs, logits, loss and every gradient. Here the same
weights go into minitransformer; logits, loss and all gradients must agree to 1e-8
relative. PyTorch is not needed to run this test.
"""

import json
import pathlib

import numpy as np
import pytest

from minitransformer.config import ModelConfig
from minitransformer.gradcheck import rel_error
from minitransformer.model import make_model

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
TOL = 1e-8


def relative(ours, theirs):
    return float(np.linalg.norm(np.asarray(ours) - theirs) / max(np.linalg.norm(theirs), 1e-300))


@pytest.mark.parametrize("name", ["torch_postnorm.npz", "torch_prenorm.npz"])
def test_numpy_model_matches_pytorch(name):
    fixture = np.load(FIXTURES / name)
    config = ModelConfig.from_dict(json.loads(str(fixture["config"])))
    params = {key[len("param.") :]: fixture[key] for key in fixture.files if key.startswith("param.")}
    model = make_model(config, params=params, backend="numpy")
    src, tgt_in, tgt_out = fixture["src"], fixture["tgt_in"], fixture["tgt_out"]
    assert (src == 0).any() and (tgt_in == 0).any(), "the fixture must exercise padding"

    logits, _ = model.forward(src, tgt_in)
    loss = model.loss_and_grads(src, tgt_in, tgt_out, smoothing=float(fixture["smoothing"]))

    report = {"logits": relative(logits, fixture["logits"]), "loss": relative(loss, fixture["loss"])}
    grad_keys = [key for key in fixture.files if key.startswith("grad.")]
    assert len(grad_keys) == len(model.params), "the fixture must hold a gradient for every parameter"
    for key in grad_keys:
        ours = model.grads[key[len("grad.") :]]
        report[key] = rel_error(ours, fixture[key], zero=1e-12)
    bad = {k: v for k, v in report.items() if not v <= TOL}
    lines = "\n".join(f"  {k}: relative error {v:.3e}" for k, v in sorted(bad.items()))
    assert not bad, f"disagreement with PyTorch ({fixture['torch_version']}) in {name}:\n{lines}"
