"""The training curves of a run as one PNG: loss against step on the left, BLEU on the right.

    plot_curves(history, "runs/toy/curves.png")

``history`` is what the training loop keeps (and saves in metrics.json):
    {"train": [{"step", "loss", ...}, ...], "valid": [{"step", "loss", "bleu"}, ...]}
The train loss is label-smoothed (what is minimized); the valid loss is the plain
cross-entropy, so the two curves are not expected to meet.
"""

# a Figure of its own, not pyplot: no global backend is chosen and no figure is left open,
# so a program that imports this module keeps whatever matplotlib set-up it has
from matplotlib.figure import Figure


def plot_curves(history, path, title=None):
    """Write the loss and BLEU curves of ``history`` to ``path`` (PNG)."""
    train = history.get("train", [])
    valid = history.get("valid", [])
    figure = Figure(figsize=(11, 4))
    loss_axes, bleu_axes = figure.subplots(1, 2)
    if train:
        loss_axes.plot([e["step"] for e in train], [e["loss"] for e in train], label="train (smoothed labels)", lw=1)
    if valid:
        loss_axes.plot([e["step"] for e in valid], [e["loss"] for e in valid], "o-", label="valid (cross-entropy)")
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("loss per target token (nats)")
    loss_axes.set_title("loss")
    loss_axes.grid(alpha=0.3)
    if train or valid:
        loss_axes.legend()
    scored = [e for e in valid if e.get("bleu") is not None]
    best = 0.0
    if scored:
        bleu_axes.plot([e["step"] for e in scored], [e["bleu"] for e in scored], "o-", color="tab:green")
        best = max(e["bleu"] for e in scored)
    bleu_axes.set_xlabel("step")
    bleu_axes.set_ylabel("BLEU")
    bleu_axes.set_title("valid BLEU (greedy, subset)")
    # the whole 0-100 scale would flatten a short run's BLEU of 10 into the floor
    bleu_axes.set_ylim(0, min(100.0, 1.2 * best + 5.0))
    bleu_axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100, format="png")
