"""Benchmarks of this machine (scripts run as `python bench/NAME.py`) and the harness of real
components they drive (`bench.harness`), which the tests use too.

Tests may import from here; nothing here imports from `tests/`.
"""
