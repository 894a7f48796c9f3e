"""Side-by-side benchmarks for textrl (not part of the test suite).

Run them from the repository root, e.g. ``python -m benchmarks.trl_train --steps 5``.
See ``benchmarks/README.md``.
"""
