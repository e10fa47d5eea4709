"""The `dangjian` command line: the root group and what every command group shares.

Kept light on purpose: `dangjian --help` must start fast, so nothing here imports SQLAlchemy,
SQLModel or `states` at module level, and the root group loads each command module only when
that command is asked for (`LazyGroup`, fed by the table in `api.cli`).
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import click

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

F = TypeVar("F", bound=Callable[..., Any])
# Warnings reach the user once, through `friendly`; keep logging's last-resort handler quiet.
logging.getLogger("states").addHandler(logging.NullHandler())
logging.getLogger("workflows").addHandler(logging.NullHandler())
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def cli_engine() -> Engine:
    from states.db import get_engine

    return get_engine()


def fail(message: str, details: Any = None, code: int = 1) -> None:
    click.secho(f"错误 / Error: {message}", fg="red", err=True)
    if isinstance(details, list):
        for item in details[:50]:
            click.echo(f"  - {_detail(item)}", err=True)
        if len(details) > 50:
            click.echo(f"  … 另有 {len(details) - 50} 条 / {len(details) - 50} more", err=True)
    sys.exit(code)


def _detail(item: Any) -> str:
    if isinstance(item, dict):
        if "row" in item:
            return f"第 {item['row']} 行 [{item.get('column', '')}]：{item.get('message', '')}"
        return "；".join(f"{k}: {v}" for k, v in item.items())
    return str(item)


def friendly(fn: F) -> F:
    """Turn domain errors into a message and a non-zero exit code; warnings into notes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        from states.errors import DomainError, InvalidInput

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fn(*args, **kwargs)
            except InvalidInput as exc:
                fail(exc.message, exc.details, code=2)
            except DomainError as exc:
                fail(exc.message, exc.details)
            except OperationalError as exc:
                fail(f"无法访问数据库 / cannot use the database: {exc.orig or exc}")
            finally:
                seen: set[str] = set()
                for w in caught:
                    text = str(w.message)
                    if text not in seen and not _internal(w.message):
                        seen.add(text)
                        click.secho(f"注意 / Warning: {text}", fg="yellow", err=True)
        return result

    return wrapper  # type: ignore[return-value]


def _internal(message: Warning | str) -> bool:
    """Library warnings meant for developers (deprecations, SQLAlchemy's reflection notes)."""
    name = type(message).__name__
    return "Deprecat" in name or name == "SAWarning"


def require_schema(engine: Engine) -> None:
    """Exit with a clear message when the database is not migrated to the newest schema."""
    from states.schema_version import database_revision, shipped_head

    current = database_revision(engine)
    if current != shipped_head():
        fail(
            f"数据库尚未升级到最新结构（当前：{current or '空库'}）。请先运行 `dangjian db upgrade`。\n"
            f"The database schema is not up to date ({current or 'empty'}); run `dangjian db upgrade`."
        )


@contextmanager
def work() -> Iterator[Session]:
    """A unit of work on the configured, migrated database."""
    from states.db import unit_of_work

    engine = cli_engine()
    require_schema(engine)
    with unit_of_work(engine) as session:
        yield session


class Lazy(NamedTuple):
    """A top-level command: the module that defines it and its one-line help."""

    module: str
    summary: str


class LazyGroup(click.Group):
    """A group whose top-level commands are imported only when one of them is used.

    `lazy` maps each command name to its module and one-line help; `--help` lists them from
    that table without importing anything. Importing a module registers its commands on `main`.
    """

    lazy: Mapping[str, Lazy] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.lazy) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            importlib.import_module(self.lazy[cmd_name].module)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(name, self._short_help(name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, name: str, limit: int) -> str:
        cmd = self.commands.get(name)
        if cmd is not None:
            return cmd.get_short_help_str(limit)
        # Shortened exactly as click shortens the loaded command's help.
        return click.Command(name, help=self.lazy[name].summary).get_short_help_str(limit)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(package_name="dangjian-flow", prog_name="dangjian")
def main() -> None:
    """dangjian-flow：基层党组织创建活动流程服务 / campaign workflows for grassroots Party organisations.

    数据库由 DATABASE_URL 指定；未设置时使用数据目录（DANGJIAN_DATA_DIR，默认 ./.data）中的
    SQLite 文件。 The database comes from DATABASE_URL, else a SQLite file in the data directory.
    """
