"""Test and bench helpers that must never be deployed (``make package`` leaves ``tests/`` out)."""
