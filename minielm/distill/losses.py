"""The distillation losses, as plain functions of tensors so they can be tested on hand-made values.

- Margin-MSE (Hofstaetter et al., arXiv 2010.02666): the student matches the teacher's score
  *difference* between two products of one query, not the raw scores, so teacher and student need
  not share a scale.
- Token-level KL with temperature (Hinton et al.): the student matches the teacher's next-token
  distribution at every answer position, scaled by T^2 so gradients keep their size across T.
- Sequence-level KD (Kim & Rush): plain next-token cross-entropy on the teacher's own outputs.
- Grouped losses for the relevance student: every pair of products within one query's group gives a
  margin (all-pairs Margin-MSE), and the group's softmax over scores is matched to the teacher's
  (listwise KL, as in ListNet-style distillation), so one forward pass teaches many comparisons.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def margin_mse(
    student_pos: torch.Tensor, student_neg: torch.Tensor, teacher_pos: torch.Tensor, teacher_neg: torch.Tensor
) -> torch.Tensor:
    """Mean of ((s+ - s-) - (t+ - t-))^2 over the batch."""
    if not student_pos.shape == student_neg.shape == teacher_pos.shape == teacher_neg.shape:
        raise ValueError(
            "margin_mse expects four tensors of one shape, got "
            f"{[tuple(t.shape) for t in (student_pos, student_neg, teacher_pos, teacher_neg)]}"
        )
    return F.mse_loss(student_pos - student_neg, (teacher_pos - teacher_neg).to(student_pos.dtype))


def soft_label_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over classes, averaged over the batch (teacher given as probabilities)."""
    log_student = F.log_softmax(student_logits, dim=-1)
    return F.kl_div(log_student, teacher_probs.to(log_student.dtype), reduction="batchmean")


def _groups(values: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    if sum(sizes) != values.shape[0] or min(sizes, default=0) < 2:
        raise ValueError(f"group sizes {sizes} must be >= 2 each and sum to the {values.shape[0]} scores")
    return values.split(sizes)


def group_margin_mse(student: torch.Tensor, teacher: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Margin-MSE over every ordered pair within each group, averaged over groups.

    For d = s - t, the mean of ((s_i - s_j) - (t_i - t_j))^2 over all (i, j) of a group is 2 * Var(d).
    """
    d = student - teacher.to(student.dtype)
    return torch.stack([2.0 * g.var(unbiased=False) for g in _groups(d, sizes)]).mean()


def listwise_kl(student: torch.Tensor, teacher: torch.Tensor, sizes: list[int], temperature: float) -> torch.Tensor:
    """KL(softmax(t / T) || softmax(s / T)) within each group, averaged over groups."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    losses = []
    for s, t in zip(_groups(student, sizes), _groups(teacher.to(student.dtype), sizes)):
        log_t = F.log_softmax(t / temperature, dim=0)
        losses.append((log_t.exp() * (log_t - F.log_softmax(s / temperature, dim=0))).sum())
    return torch.stack(losses).mean()


def _shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align position t's logits with token t+1 (causal LM)."""
    return logits[:, :-1, :], labels[:, 1:]


def sequence_kd_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on teacher-generated targets; ``labels`` is -100 outside the answer."""
    logits, targets = _shift(student_logits, labels)
    if not (targets != IGNORE_INDEX).any():
        raise ValueError("sequence_kd_loss: no answer tokens in the batch (all labels are -100)")
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX)


def token_kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T) averaged over the answer positions (where labels != -100)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ: the vocabularies must match"
        )
    student, targets = _shift(student_logits, labels)
    teacher = teacher_logits[:, :-1, :]
    mask = targets != IGNORE_INDEX
    if not mask.any():
        raise ValueError("token_kl_loss: no answer tokens in the batch (all labels are -100)")
    log_p_student = F.log_softmax(student[mask].float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher[mask].float() / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    return kl * temperature**2


def rewriter_distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    seq_kd_weight: float,
    temperature: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """w * sequence-KD CE + (1 - w) * token KL; returns the loss and its parts for logging."""
    if not 0.0 <= seq_kd_weight <= 1.0:
        raise ValueError(f"seq_kd_weight must be in [0, 1], got {seq_kd_weight}")
    ce = sequence_kd_loss(student_logits, labels)
    kl = token_kl_loss(student_logits, teacher_logits, labels, temperature)
    loss = seq_kd_weight * ce + (1.0 - seq_kd_weight) * kl
    return loss, {"seq_kd_ce": float(ce.detach()), "token_kl": float(kl.detach())}
