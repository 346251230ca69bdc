"""The optimizer: Adam (adam.py), the paper's learning-rate schedule (schedule.py) and
gradient clipping by global norm (clip.py), one short file each."""

from .adam import Adam
from .clip import clip_grad_norm
from .schedule import noam_lr

__all__ = ["Adam", "clip_grad_norm", "noam_lr"]
