"""Pipelines declared in configuration (include/config/*.yaml) and the task factories they use."""
