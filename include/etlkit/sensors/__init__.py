"""Sensors that wait for work to arrive without holding a worker slot (deferrable by default)."""
