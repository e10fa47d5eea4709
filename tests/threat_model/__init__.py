"""Probe-style tests: the threat model of issue 11, one module per finding area."""
