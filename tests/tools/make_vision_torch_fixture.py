"""Write the PyTorch fixture that the vision building blocks must agree with
(tests/test_vision_torch_agreement.py).

For each case it saves the float64 inputs, a random upstream gradient dy, PyTorch's output
and PyTorch's gradients of sum(y · dy):

    conv_*      torch.nn.functional.conv2d with stride, padding, dilation and groups
    avgpool_*   avg_pool2d (count_include_pad=True, the default)
    maxpool_*   max_pool2d, one case on integer-valued inputs full of ties
    bn_train_*  batch_norm in training mode: output, gradients, updated running statistics
    bn_eval     batch_norm in eval mode

Regenerate (needs PyTorch; a CPU build is enough):

    .venv/bin/pip install torch==2.13.0
    .venv/bin/python tests/tools/make_vision_torch_fixture.py

It writes tests/fixtures/torch_vision.npz. The tests read that file and never import torch.
"""

import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "torch_vision.npz"

CONV_CASES = {
    "conv_plain": dict(x=(2, 3, 7, 6), w=(4, 3, 3, 3), stride=1, padding=1, dilation=1, groups=1),
    "conv_strided": dict(x=(2, 4, 9, 8), w=(6, 4, 3, 2), stride=(2, 3), padding=(1, 0), dilation=1, groups=1),
    "conv_dilated": dict(x=(1, 2, 10, 9), w=(3, 2, 3, 3), stride=1, padding=2, dilation=(2, 3), groups=1),
    "conv_grouped": dict(x=(2, 6, 8, 8), w=(9, 2, 3, 3), stride=2, padding=1, dilation=1, groups=3),
    "conv_depthwise": dict(x=(2, 4, 7, 7), w=(4, 1, 5, 5), stride=1, padding=2, dilation=2, groups=4),
}
POOL_CASES = {
    "avgpool_2": dict(x=(2, 3, 8, 8), kernel=2, stride=2, padding=0),
    "avgpool_3s2p1": dict(x=(2, 3, 9, 7), kernel=3, stride=2, padding=1),
    "maxpool_2": dict(x=(2, 3, 8, 8), kernel=2, stride=2, padding=0),
    "maxpool_3s1p1": dict(x=(2, 3, 7, 9), kernel=3, stride=1, padding=1),
    "maxpool_ties": dict(x=(2, 3, 8, 8), kernel=2, stride=2, padding=0, ties=True),
    "maxpool_ties_overlap": dict(x=(1, 2, 7, 7), kernel=3, stride=2, padding=1, ties=True),
}


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    arrays, cases = {}, {}

    def tensor(array):
        return torch.tensor(array, dtype=torch.float64, requires_grad=True)

    for name, case in CONV_CASES.items():
        x, w, b = rng.standard_normal(case["x"]), rng.standard_normal(case["w"]), rng.standard_normal(case["w"][0])
        tx, tw, tb = tensor(x), tensor(w), tensor(b)
        y = F.conv2d(tx, tw, tb, stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
        dy = rng.standard_normal(tuple(y.shape))
        (y * torch.tensor(dy)).sum().backward()
        arrays.update({f"{name}.x": x, f"{name}.w": w, f"{name}.b": b, f"{name}.dy": dy, f"{name}.y": y.detach().numpy(),
                       f"{name}.dx": tx.grad.numpy(), f"{name}.dw": tw.grad.numpy(), f"{name}.db": tb.grad.numpy()})  # fmt: skip
        cases[name] = {key: value for key, value in case.items() if key not in ("x", "w")}

    for name, case in POOL_CASES.items():
        if case.get("ties"):
            x = rng.integers(0, 3, size=case["x"]).astype(np.float64)  # values 0, 1, 2: ties everywhere
        else:
            x = rng.standard_normal(case["x"])
        tx = tensor(x)
        pool = F.max_pool2d if name.startswith("maxpool") else F.avg_pool2d
        y = pool(tx, case["kernel"], case["stride"], case["padding"])
        dy = rng.standard_normal(tuple(y.shape))
        (y * torch.tensor(dy)).sum().backward()
        arrays.update({f"{name}.x": x, f"{name}.dy": dy, f"{name}.y": y.detach().numpy(), f"{name}.dx": tx.grad.numpy()})
        cases[name] = {key: value for key, value in case.items() if key != "x"}

    for name, shape in (("bn_train_4d", (4, 3, 5, 5)), ("bn_train_2d", (8, 5))):
        x = rng.standard_normal(shape) * 2.0 + 0.5
        channels = shape[1]
        gamma, beta = rng.standard_normal(channels), rng.standard_normal(channels)
        running_mean, running_var = rng.standard_normal(channels), rng.uniform(0.5, 2.0, channels)
        tx, tg, tb = tensor(x), tensor(gamma), tensor(beta)
        trm, trv = torch.tensor(running_mean), torch.tensor(running_var)
        y = F.batch_norm(tx, trm, trv, tg, tb, training=True, momentum=0.1, eps=1e-5)
        dy = rng.standard_normal(shape)
        (y * torch.tensor(dy)).sum().backward()
        arrays.update({f"{name}.x": x, f"{name}.gamma": gamma, f"{name}.beta": beta,
                       f"{name}.running_mean": running_mean, f"{name}.running_var": running_var, f"{name}.dy": dy,
                       f"{name}.y": y.detach().numpy(), f"{name}.dx": tx.grad.numpy(), f"{name}.dgamma": tg.grad.numpy(),
                       f"{name}.dbeta": tb.grad.numpy(), f"{name}.new_running_mean": trm.numpy(),
                       f"{name}.new_running_var": trv.numpy()})  # fmt: skip

    name = "bn_eval"
    x = rng.standard_normal((3, 4, 4, 4))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    running_mean, running_var = rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)
    tx, tg, tb = tensor(x), tensor(gamma), tensor(beta)
    y = F.batch_norm(tx, torch.tensor(running_mean), torch.tensor(running_var), tg, tb, training=False, eps=1e-5)
    dy = rng.standard_normal(x.shape)
    (y * torch.tensor(dy)).sum().backward()
    arrays.update({f"{name}.x": x, f"{name}.gamma": gamma, f"{name}.beta": beta, f"{name}.running_mean": running_mean,
                   f"{name}.running_var": running_var, f"{name}.dy": dy, f"{name}.y": y.detach().numpy(),
                   f"{name}.dx": tx.grad.numpy(), f"{name}.dgamma": tg.grad.numpy(), f"{name}.dbeta": tb.grad.numpy()})  # fmt: skip

    arrays["cases"] = np.array(json.dumps(cases))
    arrays["torch_version"] = np.array(torch.__version__)
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, **arrays)
    print(f"wrote {FIXTURE} ({len(arrays)} arrays, torch {torch.__version__})")


if __name__ == "__main__":
    main()
