"""Online RL of the student rewriter: rewards from feedback windows and the relevance judge, GRPO
updates through TRL, evaluation, gating and canary rollout."""
