"""The `dangjian` command line: the root group and what every command group shares."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from states.errors import DomainError, InvalidInput

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
    from states.migrate import current_revision, head_revision

    current = current_revision(engine)
    if current != head_revision():
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


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="dangjian-flow", prog_name="dangjian")
def main() -> None:
    """dangjian-flow：基层党组织创建活动流程服务 / campaign workflows for grassroots Party organisations.

    数据库由 DATABASE_URL 指定；未设置时使用数据目录（DANGJIAN_DATA_DIR，默认 ./.data）中的
    SQLite 文件。 The database comes from DATABASE_URL, else a SQLite file in the data directory.
    """
