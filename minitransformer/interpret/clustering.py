"""Heads grouped by what they do (Clark et al., 2019): a distance between heads, a
hierarchical clustering, a 2-D map, and a name for each group's pattern.

Distance. Two heads that read the same sentences are compared row by row, each row a
distribution over the keys, with the Jensen–Shannon distance (the square root of the
divergence, in bits, a metric in [0, 1]):

    JS(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m),   m = ½(p + q)
    d(a, b)  = mean over every row r of the sample of √JS(a_r, b_r)

Clustering. Agglomerative, average linkage (UPGMA): start with every head its own cluster,
and repeatedly merge the two clusters whose mean pairwise distance is smallest. The merges,
in order, are the dendrogram; cutting it into k clusters undoes the last k − 1 merges.

Map. Classical multidimensional scaling: the two leading eigenvectors of the doubly
centred squared distances, B = −½·J·D²·J with J = I − 11ᵀ/N, scaled by √eigenvalue, place
the heads in the plane with distances as close to d as two dimensions allow.

Patterns. For each head, the mean attention each query puts on

    previous   key q − 1            next     key q + 1           self   key q
    eos/punct  the last position or a punctuation piece (".", "?", </s>)

A head (or a cluster, by its members' mean) is named by the largest of these if it holds
at least PATTERN_THRESHOLD of the weight, and "broad" otherwise.

    from minitransformer.interpret.clustering import cluster_heads
    result = cluster_heads({"enc 0.1": maps_a, "enc 0.2": maps_b, …}, punctuation, n_clusters=4)
"""

from typing import NamedTuple

import numpy as np

PATTERNS = ("previous", "next", "self", "eos/punct")
PATTERN_THRESHOLD = 0.4


def js_distance(p, q):
    """p, q (…, K) distributions -> (…,) Jensen–Shannon distance in bits, in [0, 1]."""
    m = 0.5 * (p + q)

    def kl(a, b):
        ratio = np.where(a > 0, a / np.where(b > 0, b, 1.0), 1.0)
        return (a * np.log2(ratio)).sum(axis=-1)

    return np.sqrt(np.maximum(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0))


def head_distances(maps):
    """maps: [N heads][sentences] of (Q, K) rows -> (N, N) mean JS distance."""
    rows = [np.concatenate([m.reshape(-1, m.shape[-1]) for m in head], axis=0) if _same_width(head)
            else None for head in maps]
    n_heads = len(maps)
    distance = np.zeros((n_heads, n_heads))
    for a in range(n_heads):
        for b in range(a + 1, n_heads):
            if rows[a] is not None and rows[b] is not None:
                d = js_distance(rows[a], rows[b]).mean()
            else:  # sentences of different lengths: compare sentence by sentence
                d = np.mean(np.concatenate([js_distance(x, y).ravel() for x, y in zip(maps[a], maps[b])]))
            distance[a, b] = distance[b, a] = d
    return distance


def _same_width(head):
    return len({m.shape[-1] for m in head}) == 1


def average_linkage(distance):
    """(N, N) distances -> merges (N − 1, 4): [cluster a, cluster b, distance, size], as
    scipy's linkage writes them (clusters ≥ N are earlier merges, N + row)."""
    n_heads = len(distance)
    members = {i: [i] for i in range(n_heads)}
    merges = []
    for step in range(n_heads - 1):
        ids = sorted(members)
        best = None
        for x in range(len(ids)):
            for y in range(x + 1, len(ids)):
                a, b = ids[x], ids[y]
                d = distance[np.ix_(members[a], members[b])].mean()
                if best is None or d < best[0] - 1e-15:
                    best = (d, a, b)
        d, a, b = best
        members[n_heads + step] = members.pop(a) + members.pop(b)
        merges.append([a, b, d, len(members[n_heads + step])])
    return np.array(merges, dtype=np.float64)


def cut(merges, n_clusters):
    """merges of N − 1 steps -> labels (N,) in 0 … n_clusters − 1, numbered by first member."""
    n_heads = len(merges) + 1
    members = {i: [i] for i in range(n_heads)}
    for step, (a, b, _, _) in enumerate(merges[: n_heads - n_clusters]):
        members[n_heads + step] = members.pop(int(a)) + members.pop(int(b))
    labels = np.empty(n_heads, dtype=np.int64)
    for number, group in enumerate(sorted(members.values(), key=min)):
        labels[group] = number
    return labels


def leaf_order(merges):
    """The order of the leaves along a dendrogram's axis (each merge: a's leaves, then b's)."""
    n_heads = len(merges) + 1
    leaves = {i: [i] for i in range(n_heads)}
    for step, (a, b, _, _) in enumerate(merges):
        leaves[n_heads + step] = leaves.pop(int(a)) + leaves.pop(int(b))
    return next(iter(leaves.values()))


def classical_mds(distance, dims=2):
    """(N, N) -> (N, dims) coordinates whose distances approximate `distance`."""
    n_heads = len(distance)
    centring = np.eye(n_heads) - np.ones((n_heads, n_heads)) / n_heads
    gram = -0.5 * centring @ (distance**2) @ centring  # (N, N)
    values, vectors = np.linalg.eigh(gram)  # ascending
    top = np.argsort(values)[::-1][:dims]
    return vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))


def pattern_scores(maps, punctuation):
    """maps [sentences] of (Q, K), punctuation [sentences] of (K,) bool (True where the key
    is a punctuation piece or </s>) -> {pattern: mean weight}. For self-attention: Q = K."""
    totals = dict.fromkeys(PATTERNS, 0.0)
    rows = 0
    for probs, punct in zip(maps, punctuation):
        n_queries, n_keys = probs.shape
        query = np.arange(n_queries)
        previous = query - 1 >= 0
        following = query + 1 < n_keys
        totals["previous"] += probs[query[previous], query[previous] - 1].sum()
        totals["next"] += probs[query[following], query[following] + 1].sum()
        totals["self"] += probs[query[query < n_keys], query[query < n_keys]].sum()
        special = np.asarray(punct, dtype=bool).copy()
        special[-1] = True  # the last position: "." or "?" on the source, </s> or the last piece
        totals["eos/punct"] += probs[:, special].sum()
        rows += n_queries
    return {pattern: total / max(rows, 1) for pattern, total in totals.items()}


def pattern_name(scores):
    """{pattern: mean weight} -> the dominant pattern, or "broad"."""
    best = max(PATTERNS, key=lambda p: scores[p])
    return best if scores[best] >= PATTERN_THRESHOLD else "broad"


class Clusters(NamedTuple):
    names: list  # (N,) head names
    distance: np.ndarray  # (N, N)
    merges: np.ndarray  # (N − 1, 4)
    labels: np.ndarray  # (N,) cluster of each head
    coordinates: np.ndarray  # (N, 2) MDS map
    head_patterns: list  # (N,) pattern name of each head
    head_scores: list  # (N,) {pattern: weight}
    cluster_patterns: list  # (k,) pattern name of each cluster


def cluster_heads(maps, punctuation, n_clusters):
    """maps {head name: [sentences] of (Q, K)}, punctuation [sentences] of (K,) bool -> Clusters."""
    names = list(maps)
    if not 1 <= n_clusters <= len(names):
        raise ValueError(f"cannot make {n_clusters} clusters of {len(names)} heads")
    distance = head_distances([maps[name] for name in names])
    merges = average_linkage(distance)
    labels = cut(merges, n_clusters)
    scores = [pattern_scores(maps[name], punctuation) for name in names]
    cluster_patterns = []
    for number in range(n_clusters):
        members = [scores[i] for i in np.flatnonzero(labels == number)]
        cluster_patterns.append(pattern_name({p: np.mean([m[p] for m in members]) for p in PATTERNS}))
    return Clusters(names, distance, merges, labels, classical_mds(distance), [pattern_name(s) for s in scores],
                    scores, cluster_patterns)
