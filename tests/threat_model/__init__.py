"""Probe-style tests: the threat model of hostile settings and files, one module per finding area."""
