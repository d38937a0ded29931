"""Benchmarks for gonext_plugins, run as ``python -m benchmarks <name>``."""
