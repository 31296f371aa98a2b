"""Drift monitoring of served traffic: query embeddings, text descriptors, outcomes and rewrite behaviour.

``minielm.drift.job.run_drift_job`` is the entry point (CLI ``minielm drift check``, the KFP drift
pipeline and the demo step all call it); ``minielm.drift.monitor.run_drift`` is the pure comparison
of two DataFrames in the feedback-window layout.
"""
