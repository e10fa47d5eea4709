"""`python -m bench.sweep`."""

from bench.sweep.cli import main

main()
