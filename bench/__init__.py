"""Benchmarks: campaign launch at scale and stage transitions against the shared baselines.

Run everything and write BENCHMARKS.md with `python -m bench` from the repository root.
"""
