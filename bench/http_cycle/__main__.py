"""`python -m bench.http_cycle`."""

from bench.http_cycle.cli import main

main()
