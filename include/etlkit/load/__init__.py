"""Warehouse loaders: landing copies, then core tables merged by key."""
