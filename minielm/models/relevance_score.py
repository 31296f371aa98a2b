"""The scalar relevance every ESCI classifier outputs: the expected *graded* gain of its class probabilities.

Margin-MSE trains on score differences, so the score must keep all four classes apart. The ESCI
nDCG gains (E 1, S 0.1, C 0.01, I 0) would leave Substitute, Complement and Irrelevant within 0.1 of
each other and teach E-versus-rest only. Evenly spaced gains in the ESCI order (E 1, S 2/3, C 1/3,
I 0) rank like the nDCG gains (same order) while every neighbouring pair of classes is a third
apart. Evaluation keeps the ESCI nDCG gains (:mod:`minielm.evaluation`); only the model's scalar
changes. Why these and not others: docs/training.md ("Relevance score").
"""

from __future__ import annotations

import numpy as np
import torch

ESCI_CLASSES = ("E", "S", "C", "I")
SCORE_GAINS = (1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0)


def expected_gain(probabilities: np.ndarray) -> np.ndarray:
    """Shape (n, 4) class probabilities -> shape (n,) scores in [0, 1]."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(ESCI_CLASSES):
        raise ValueError(f"expected probabilities of shape (n, {len(ESCI_CLASSES)}), got {probabilities.shape}")
    return (probabilities @ np.asarray(SCORE_GAINS)).astype(np.float32)


def expected_gain_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Differentiable version for training: softmax(logits) @ gains, shape (batch,)."""
    gains = torch.tensor(SCORE_GAINS, dtype=logits.dtype, device=logits.device)
    return torch.softmax(logits, dim=-1) @ gains
