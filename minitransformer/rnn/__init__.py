"""Recurrent translators before the Transformer: a GRU with backpropagation through time
(gru.py), and RNNenc and RNNsearch on top of it (model.py). docs/15-why-attention.md."""

from .config import ARCHITECTURES, RNNConfig
from .model import RNNEncoderDecoder, make_rnn_model

__all__ = ["ARCHITECTURES", "RNNConfig", "RNNEncoderDecoder", "make_rnn_model"]
