"""Benchmarks for Valhalla GO: ``python -m bench --help`` (docs/dev/performance.md).

Not shipped, not tests.
"""
