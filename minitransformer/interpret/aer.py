"""Alignments from attributions, and the alignment error rate (Och & Ney, 2003).

An attribution or attention matrix M (T', S') over words says, for each French word j, how
much each English word i explains it. The alignment it implies links each French word to
the English word it scores highest, as attention-based aligners do (Garg et al., 2019):

    A = { (i, j) : i = argmax_i M[j, i] }                 one link per French word

Against gold sure links S and possible links P (here P = S: every gold link is sure),

    AER = 1 − (|A ∩ S| + |A ∩ P|) / (|A| + |S|)          0 is perfect, 1 shares nothing

summed over the corpus before dividing (a corpus AER, not a mean of sentence AERs). Gold
links name English word i and French word j, in Pharaoh "i-j" form (data/toy-*.align).

    from minitransformer.interpret.aer import alignment_error_rate, argmax_alignment
"""

import numpy as np


class AlignmentFileError(ValueError):
    """An alignment file that does not fit its sentences; the message names the line."""


def parse_pharaoh(line):
    """'0-0 1-2 2-1' -> {(0, 0), (1, 2), (2, 1)}, (English i, French j)."""
    links = set()
    for pair in line.split():
        left, dash, right = pair.partition("-")
        if not dash or not left.isdigit() or not right.isdigit():
            raise ValueError(f"{pair!r} is not an i-j pair")
        links.add((int(left), int(right)))
    return links


def read_alignments(path, pairs):
    """path: one Pharaoh line per pair; pairs [(english, french)] -> [set of (i, j)].

    Raises AlignmentFileError when the line count or an index does not fit the sentences."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    if len(lines) != len(pairs):
        raise AlignmentFileError(f"{path} has {len(lines)} lines but there are {len(pairs)} sentence pairs")
    alignments = []
    for number, (line, (english, french)) in enumerate(zip(lines, pairs), 1):
        try:
            links = parse_pharaoh(line)
        except ValueError as error:
            raise AlignmentFileError(f"{path}:{number}: {error}") from None
        n_en, n_fr = len(english.split()), len(french.split())
        bad = [(i, j) for i, j in links if i >= n_en or j >= n_fr]
        if bad:
            i, j = bad[0]
            raise AlignmentFileError(
                f"{path}:{number}: link {i}-{j} is outside the sentences ({n_en} English, {n_fr} French words)"
            )
        alignments.append(links)
    return alignments


def argmax_alignment(matrix):
    """matrix (T', S') French words × English words -> {(i, j)}: each French word j to its
    highest-scoring English word i."""
    return {(int(np.argmax(row)), j) for j, row in enumerate(matrix)}


def alignment_error_rate(predicted, sure, possible=None):
    """predicted, sure, possible: lists (one per sentence) of {(i, j)} -> corpus AER.
    possible defaults to sure (no possible-only links)."""
    possible = sure if possible is None else possible
    hits_sure = sum(len(a & s) for a, s in zip(predicted, sure))
    hits_possible = sum(len(a & (p | s)) for a, s, p in zip(predicted, sure, possible))
    size = sum(len(a) for a in predicted) + sum(len(s) for s in sure)
    return 1.0 - (hits_sure + hits_possible) / size if size else 0.0
