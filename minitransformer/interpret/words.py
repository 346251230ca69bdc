"""From subword pieces to words: the one rule every method here uses.

The model reads and writes SentencePiece pieces ("▁l", "'", "homme"); the gold alignments
name whitespace words (l'homme). A piece that starts with "▁" starts a word, and every other
piece belongs to the word before it. A (T, S) matrix over pieces, row t = an output piece,
column s = a source piece, becomes a (T', S') matrix over words by

    W[j, i] = mean over the pieces t of French word j of ( Σ over the pieces s of English word i of M[t, s] )

Sum over source pieces, because attention weights and attributions are amounts that add
(a word holds what its pieces hold, and a row of attention still sums to 1); mean over
target pieces, because each target piece is its own decision and the word's row should
stay on the scale of one. Special pieces (</s>) belong to no word and are dropped.
"""

import numpy as np


class WordMismatch(ValueError):
    """The pieces do not make up the words of the sentence they are said to encode."""


def word_index(pieces, n_words=None):
    """pieces (P,) strings -> index (P,) ints: the word of each piece, −1 for specials."""
    index, word = [], -1
    for piece in pieces:
        if piece.startswith("<") and piece.endswith(">"):  # <s>, </s>, <pad>, <unk> alone
            index.append(-1 if piece != "<unk>" else max(word, 0))
            continue
        if piece.startswith("▁") or word < 0:
            word += 1
        index.append(word)
    if n_words is not None and word + 1 != n_words:
        raise WordMismatch(f"{len(pieces)} pieces make {word + 1} words, the sentence has {n_words}")
    return np.array(index, dtype=np.int64)


def reduce_to_words(matrix, target_index, source_index):
    """matrix (T, S) over pieces, target_index (T,), source_index (S,) -> (T', S') over words."""
    n_target, n_source = int(target_index.max()) + 1, int(source_index.max()) + 1
    by_source = np.zeros((matrix.shape[0], n_source))  # (T, S'): sum over the pieces of each word
    for s, word in enumerate(source_index):
        if word >= 0:
            by_source[:, word] += matrix[:, s]
    out = np.zeros((n_target, n_source))  # (T', S'): mean over the pieces of each word
    for word in range(n_target):
        rows = np.flatnonzero(target_index == word)
        out[word] = by_source[rows].mean(axis=0)
    return out
