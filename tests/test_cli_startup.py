"""`dangjian` starts fast: the root group lists its commands from a static table (api.cli.COMMANDS)
and imports a command's module only when that command runs.

These tests check the table tells the truth (every command importable, in the module it names,
with the same one-line help, and no command missing from it) and that importing `api.cli` or
printing `dangjian --help` pulls in none of the heavy libraries. No timing is asserted here;
the README gives the measurement.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import click
from click.testing import CliRunner

import api.cli
from api.cli import COMMANDS, main

HEAVY = ("sqlalchemy", "sqlmodel", "fastapi", "prefect", "pydantic", "states", "uvicorn")


def _fresh(code: str) -> str:
    """Run `code` in a new interpreter and return what it prints."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def _loaded_heavy(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    names = json.loads(_fresh(probe).strip().splitlines()[-1])
    return sorted({n.split(".")[0] for n in names} & set(HEAVY))


def _load_everything() -> None:
    for info in pkgutil.iter_modules(api.cli.__path__):
        if info.name == "__main__":  # runs the command line
            continue
        importlib.import_module(f"api.cli.{info.name}")


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert _loaded_heavy("import api.cli") == []


def test_printing_the_help_loads_no_heavy_library() -> None:
    code = "from api.cli import main\nmain(['--help'], standalone_mode=False)"
    assert _loaded_heavy(code) == []


def test_the_table_names_exactly_the_commands_the_modules_define() -> None:
    _load_everything()
    assert set(main.commands) == set(COMMANDS)
    for name, entry in COMMANDS.items():
        cmd = main.commands[name]
        assert cmd.callback is not None and cmd.callback.__module__ == entry.module, name
        assert cmd.get_short_help_str(10_000) == entry.summary, name


def test_every_listed_command_loads_on_demand_in_a_fresh_process() -> None:
    code = (
        "import json\nfrom api.cli import COMMANDS, main\nimport click\n"
        "ctx = click.Context(main)\n"
        "print(json.dumps({n: main.get_command(ctx, n).name for n in main.list_commands(ctx)}))"
    )
    loaded = json.loads(_fresh(code).strip().splitlines()[-1])
    assert loaded == {name: name for name in COMMANDS}


def test_the_lazy_help_reads_as_the_loaded_help() -> None:
    code = (
        "import json, importlib, pkgutil, click\nimport api.cli\nfrom api.cli import main\n"
        "def text():\n"
        "    return main.get_help(click.Context(main, info_name='dangjian', terminal_width=80))\n"
        "lazy = text()\n"
        "for info in pkgutil.iter_modules(api.cli.__path__):\n"
        "    if info.name != '__main__':\n"
        "        importlib.import_module('api.cli.' + info.name)\n"
        "print(json.dumps([lazy, text()]))"
    )
    lazy, loaded = json.loads(_fresh(code).strip().splitlines()[-1])
    assert lazy == loaded
    for name in COMMANDS:
        assert f"\n  {name} " in lazy


def test_each_command_and_subcommand_still_answers_help() -> None:
    runner = CliRunner()

    def walk(cmd: click.Command, path: list[str]) -> None:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, [*path, name]
                walk(sub, [*path, name])

    walk(main, [])


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_a_subcommands_help_loads_no_database_library() -> None:
    """`dangjian users add --help` and its kind answer before SQLAlchemy or Alembic is imported:
    the command modules import the database layer inside the commands, not at the top."""
    database = {"sqlalchemy", "sqlmodel", "alembic", "fastapi", "prefect", "pydantic", "uvicorn"}
    for name in sorted({lazy.module for lazy in COMMANDS.values()}):
        probe = f"import {name}, json, sys\nprint(json.dumps(sorted(sys.modules)))"
        loaded = {n.split(".")[0] for n in json.loads(_fresh(probe).strip().splitlines()[-1])}
        assert loaded & database == set(), name
