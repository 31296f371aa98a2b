"""The recurring-run upsert replaces a schedule of the same name instead of adding a second one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipelines.registry import PipelineNotFound, load_pipeline, upsert_recurring_run


class RecordingKfpClient:
    """Stands in for kfp.Client, whose server cannot run here; records what the upsert asks for."""

    def __init__(self, existing):
        self.runs = list(existing)
        self.deleted = []

    def create_experiment(self, name):
        return SimpleNamespace(experiment_id=f"exp-{name}")

    def list_recurring_runs(self, experiment_id, page_size):
        return SimpleNamespace(recurring_runs=list(self.runs))

    def delete_recurring_run(self, recurring_run_id):
        self.deleted.append(recurring_run_id)
        self.runs = [r for r in self.runs if r.recurring_run_id != recurring_run_id]

    def create_recurring_run(self, **kwargs):
        run = SimpleNamespace(
            recurring_run_id=f"rr-{len(self.runs) + len(self.deleted)}", display_name=kwargs["job_name"], kwargs=kwargs
        )
        self.runs.append(run)
        return run


def test_upsert_replaces_the_existing_schedule(tmp_path):
    other = SimpleNamespace(recurring_run_id="keep", display_name="someone-else")
    old = SimpleNamespace(recurring_run_id="old", display_name="minielm-rl_retraining")
    client = RecordingKfpClient([other, old])
    package = tmp_path / "p.yaml"
    new_id = upsert_recurring_run(client, "rl_retraining", "minielm", "0 0 */6 * * *", {"a": 1}, package)
    assert client.deleted == ["old"]
    names = sorted(r.display_name for r in client.runs)
    assert names == ["minielm-rl_retraining", "someone-else"]
    created = next(r for r in client.runs if r.recurring_run_id == new_id)
    assert created.kwargs["cron_expression"] == "0 0 */6 * * *"
    assert created.kwargs["params"] == {"a": 1} and created.kwargs["max_concurrency"] == 1
    upsert_recurring_run(client, "rl_retraining", "minielm", "0 0 */6 * * *", {"a": 1}, package)
    assert sum(r.display_name == "minielm-rl_retraining" for r in client.runs) == 1


def test_unknown_pipeline_names_the_choices():
    with pytest.raises(PipelineNotFound, match="training"):
        load_pipeline("nope")
