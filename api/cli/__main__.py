"""`python -m api.cli`: the `dangjian` command."""

from api.cli import main

if __name__ == "__main__":  # not when a spawned server process imports this module again
    main()
