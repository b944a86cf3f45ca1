"""grok_operator: the kopf operator that turns GrokDeployment resources into serving replica groups.

Imported as `grok_operator` (the folder is `operator/`, which must never be importable as `operator`:
that would shadow Python's standard-library module). It never imports JAX.
"""
