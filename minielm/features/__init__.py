"""Feast feature helpers: keys, apply/materialise, online lookups with a latency budget."""
