"""Demo step: the RL loop closes at toy scale on the windows the shoppers' feedback produced.

Needs ``dataset_dir``, ``index_dir`` (data step); uses ``student_relevance_dir`` (the judge) and
``feedback_window_keys`` (feedback step; shown, then read through the watermark like any scheduled run)
when present. RL improves the registry's production rewriter and is skipped when there is none: a student
that failed its distillation gate is never promoted here. Produces ``rl_report``.
"""

from __future__ import annotations

from minielm.presets import toy_rl
from minielm.registry import ModelRegistry


def _production_version(ctx, registry: ModelRegistry, name: str) -> str | None:
    """The production rewriter's version; None (RL skipped) when no learned student passed its gate: a student
    that failed the distillation gate is never made production here."""
    from minielm.rl.retraining import is_baseline

    entry = registry.stage(name, "production")
    if entry is None or is_baseline(entry):
        gate = (ctx.artifacts.distill_gate or {}).get("rewriter", {})
        why = "; ".join(gate.get("reasons", [])) or "no student-rewriter version is in production"
        serving = "the baseline rewriter serves" if entry is not None else "nothing to improve"
        ctx.echo(f"  RL skipped: no learned rewriter passed its distillation gate ({why}); {serving}")
        return None
    return entry.version


def format_rl_table(heldout: dict, k: int) -> list[str]:
    raw = heldout["raw"]["relevant_per_query"]
    distilled = heldout["production"]["relevant_per_query"]
    header = (
        f"{'system':<12} {'relevant@' + str(k):>12} {'nDCG@' + str(k):>9} {'zero-result':>12} {'vs raw':>8} "
        f"{'vs distilled':>13}"
    )
    lines = [header, "-" * len(header)]
    for label, key in (("raw", "raw"), ("distilled", "production"), ("RL-tuned", "candidate")):
        m = heldout[key]
        vs_raw = f"{m['relevant_per_query'] / raw - 1:+.1%}" if raw else "n/a"
        vs_distilled = f"{m['relevant_per_query'] / distilled - 1:+.1%}" if distilled else "n/a"
        lines.append(
            f"{label:<12} {m['relevant_per_query']:>12.3f} {m['ndcg']:>9.3f} {m['zero_result_rate']:>12.1%} "
            f"{vs_raw:>8} {vs_distilled:>13}"
        )
    return lines


def rl_demo_step(ctx) -> None:
    from minielm.rl.retraining import NOTHING_TO_DO, run_retraining

    ctx.artifacts.require("dataset_dir", "index_dir", step="RL retraining")
    settings = ctx.settings.model_copy(update={"rl": toy_rl(ctx.settings.rl)})
    registry = ModelRegistry(ctx.store)
    name = settings.models.student_rewriter
    before = _production_version(ctx, registry, name)
    if before is None:
        ctx.artifacts.rl_report = {"status": "skipped", "production_before": None, "production_after": None}
        return
    windows = ctx.artifacts.feedback_window_keys or []
    ctx.echo(f"  {len(windows)} feedback windows from the aggregator; production {name} is {before}")
    result = run_retraining(
        settings,
        ctx.store,
        ctx.artifacts.dataset_dir,
        ctx.artifacts.index_dir,
        ctx.artifacts.student_relevance_dir,
        ctx.workdir / "rl",
    )
    report = {"status": result["status"], "production_before": before, "seconds": result.get("seconds")}
    if result["status"] == NOTHING_TO_DO:
        ctx.echo(f"  nothing to do: {result['prepare']['reason']}")
    else:
        prepared, train, evaluation, rollout = (result[k] for k in ("prepare", "train", "evaluation", "rollout"))
        ctx.echo(
            f"  training set: {prepared['n_train_queries']} queries ({prepared['n_feedback_queries']} from "
            f"{prepared['n_requests']} served requests, {prepared['n_excluded_held_out']} held-out requests left out; "
            f"{prepared['n_queries_with_served_alternatives']} served more than one rewrite through exploration)"
        )
        ctx.echo(
            f"  {train['trainer'].upper()}: {train['steps']} steps, reward {train['reward_first']:.3f} -> "
            f"{train['reward_last']:.3f}, mean KL {train['kl_mean']:.4f}; {train['zero_spread_groups']} of "
            f"{train['groups']} groups had zero reward spread ({train['zero_spread_share']:.0%}, dropped), "
            f"{train['mean_group_size']:.1f} candidates a group"
        )
        replay = evaluation["replay"]
        ctx.echo(
            f"  replay reward: candidate {replay['candidate_reward']:.3f} vs production "
            f"{replay['production_reward']:.3f}; KL to reference {replay['kl_to_reference']:.4f}"
        )
        ctx.echo(
            f"  quality gate {'passed' if evaluation['gate']['passed'] else 'FAILED'}: "
            + "; ".join(evaluation["gate"]["reasons"])
        )
        if "canary" in rollout:
            c = rollout["canary"]
            ctx.echo(
                f"  canary ({settings.rl.canary_traffic_percent}% of replayed traffic, {c['n_requests']} "
                f"requests): {'promote' if c['promote'] else 'production kept'}: {c['reason']}"
            )
        for line in format_rl_table(evaluation["heldout"], settings.eval.top_k):
            ctx.echo(f"  {line}")
        report.update(
            heldout={k: {m: v for m, v in d.items() if m != "by_noise"} for k, d in evaluation["heldout"].items()},
            gate=evaluation["gate"],
            replay=replay,
            canary=rollout.get("canary"),
            candidate_version=rollout.get("candidate_version"),
        )
    after = registry.stage(name, "production").version
    report["production_after"] = after
    ctx.echo(f"  production {name}: {before} -> {after}" + (" (changed)" if after != before else " (unchanged)"))
    ctx.artifacts.rl_report = report
