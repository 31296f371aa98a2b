"""Word alignment of a noisy query with its canonical rewrite: the edits that turn one into the other.

Used by the phrase-table baseline to mine (noisy span -> canonical span) pairs from training data.
Unchanged words anchor the alignment; inside a changed region a small dynamic programme pairs words
by character similarity (typos, abbreviations), splits and joins ("waterbottle" -> "water bottle"),
and groups what does not resemble anything (synonyms such as "instapot" -> "pressure cooker").
"""

from __future__ import annotations

from difflib import SequenceMatcher

from rapidfuzz.distance import Indel

SIMILAR = 0.55  # Indel similarity above which two words are taken as forms of one another
_GAP = 0.6  # cost of leaving a word unpaired


def _similarity(a: str, b: str) -> float:
    return Indel.normalized_similarity(a, b)


def _align_block(source: list[str], target: list[str]) -> list[tuple[list[str], list[str], bool]]:
    """Pieces (source words, target words, similar) covering both blocks in order."""
    n, m = len(source), len(target)
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            if cost[i][j] == inf:
                continue
            moves = [(1, 0, _GAP), (0, 1, _GAP)]
            for di, dj in ((1, 1), (2, 1), (1, 2)):
                if i + di <= n and j + dj <= m:
                    a, b = "".join(source[i : i + di]), "".join(target[j : j + dj])
                    moves.append((di, dj, 1.0 - _similarity(a, b) + 0.4 * (di + dj - 2)))
            for di, dj, step in moves:
                if i + di <= n and j + dj <= m and cost[i][j] + step < cost[i + di][j + dj]:
                    cost[i + di][j + dj] = cost[i][j] + step
                    back[i + di][j + dj] = (di, dj)
    pieces = []
    i, j = n, m
    while i or j:
        di, dj = back[i][j]
        a, b = source[i - di : i], target[j - dj : j]
        pieces.append((a, b, bool(a and b) and _similarity("".join(a), "".join(b)) >= SIMILAR))
        i, j = i - di, j - dj
    return pieces[::-1]


def aligned_edits(noisy: str, canonical: str) -> list[tuple[str, str]]:
    """(noisy span, canonical span) for every place the two word sequences differ, left to right.

    Words that resemble each other become one-word edits ("blk" -> "black"); neighbouring words that
    resemble nothing are grouped ("instapot" -> "pressure cooker", "best" -> ""). A canonical word
    with no noisy counterpart at all (``cooker`` -> ``pressure cooker``) is anchored on the next (or
    previous) noisy word so that the edit has a source to match.
    """
    source, target = noisy.split(), canonical.split()
    pieces: list[tuple[list[str], list[str], bool]] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(a=source, b=target, autojunk=False).get_opcodes():
        if tag == "equal":
            pieces += [([w], [w], True) for w in source[i1:i2]]
        else:
            pieces += _align_block(source[i1:i2], target[j1:j2])
    groups: list[list] = []  # [source words, target words, changed]
    for a, b, similar in pieces:
        if similar:
            groups.append([a, b, a != b])
        elif groups and groups[-1][2] == "loose":
            groups[-1][0] += a
            groups[-1][1] += b
        else:
            groups.append([list(a), list(b), "loose"])
    merged: list[list] = []
    for group in groups:  # canonical-only words join a changed neighbour: "hoodie" -> "hooded sweatshirt"
        if not group[0] and merged and merged[-1][2]:
            merged[-1][1] = merged[-1][1] + group[1]
        elif merged and not merged[-1][0] and merged[-1][2] and group[2]:
            merged[-1] = [group[0], merged[-1][1] + group[1], True]
        else:
            merged.append(group)
    groups = merged
    edits = []
    for index, (a, b, changed) in enumerate(groups):
        if not changed:
            continue
        if not a:  # only canonical words: anchor on a neighbouring noisy word
            if index + 1 < len(groups) and groups[index + 1][0]:
                following = groups[index + 1]
                a, b = following[0][:1], b + following[1][:1]
            elif index > 0 and groups[index - 1][0]:
                previous = groups[index - 1]
                a, b = previous[0][-1:], previous[1][-1:] + b
            else:
                continue
        edits.append((" ".join(a), " ".join(b)))
    return edits
