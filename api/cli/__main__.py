"""`python -m api.cli`: the `dangjian` command."""

from api.cli import main

main()
