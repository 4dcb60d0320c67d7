"""Benchmarks for Valhalla GO (see docs/PERFORMANCE.md). Not shipped, not tests."""
