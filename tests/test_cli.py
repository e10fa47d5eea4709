"""The `dangjian` command line against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from api.cli import main
from states.migrate import head_revision

CSV = """编码,名称,类型,上级编码,党员人数,书记,联系方式
B,示例市卫生局党委,党委,,0,,
H1,第一医院党委,党委,B,0,,
S1,内科第一党支部,党支部,H1,5,支部书记甲,0000-1
S2,内科第二党支部,党支部,H1,4,,
"""


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DANGJIAN_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_every_command_has_help() -> None:
    runner = CliRunner()

    def walk(cmd: click.Command, path: list[str]) -> None:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Usage" in result.output
        if isinstance(cmd, click.Group):  # commands load lazily: ask the group, not .commands
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, [*path, name]
                walk(sub, [*path, name])

    walk(main, [])


def test_unmigrated_database_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = CliRunner().invoke(main, ["campaign", "list"])
    assert result.exit_code == 1
    assert "dangjian db upgrade" in result.output
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0 and head_revision() in (result.output or "")
    assert CliRunner().invoke(main, ["campaign", "list"]).exit_code == 0


def test_operator_flow(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "orgs.csv"
    csv.write_text(CSV, encoding="utf-8")
    r = cli("import-orgs", str(csv))
    assert r.exit_code == 0 and "新增 4" in r.output
    assert "新增 0" in cli("import-orgs", str(csv)).output
    add_u1 = ("users", "add", "--username", "u1", "--password", "secret-123", "--org", "S1")
    r = cli(*add_u1, "--role", "secretary")
    assert r.exit_code == 0
    r = cli(*add_u1, "--role", "secretary")
    assert r.exit_code == 1 and "已存在" in r.output
    r = cli(
        "users",
        "add",
        "--username",
        "u2",
        "--password",
        "secret-123",
        "--org",
        "S1",
        "--role",
        "boss",
    )
    assert r.exit_code == 2 and "未知角色" in r.output
    schedule = tmp_path / "schedule.yaml"
    soon = (date.today() + timedelta(days=30)).isoformat()
    schedule.write_text(
        f"mobilize: {{date: {soon}}}\npledge: {{working_days: 12}}\n", encoding="utf-8"
    )
    r = cli(
        "campaign",
        "launch",
        "--template",
        "chuangxian_zhengyou",
        "--root",
        "H1",
        "--schedule",
        str(schedule),
    )
    assert r.exit_code == 0, r.output
    assert "2 个支部的创建进度" in r.output
    r = cli("campaign", "status", "1")
    assert r.exit_code == 0 and "宣传发动" in r.output and "共 2 个支部的创建进度" in r.output
    assert cli("campaign", "status", "99").exit_code == 1
    r = cli("audit", "verify")
    assert r.exit_code == 0 and "审计链完整" in r.output
    assert "内科第一党支部" in cli("orgs", "tree", "--root", "H1").output


def test_bad_import_lists_rows_and_writes_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "bad.csv"
    csv.write_text(CSV + "S3,,党支部,NOPE,x,,\n", encoding="utf-8")
    r = cli("import-orgs", str(csv))
    assert r.exit_code == 2
    assert "第 6 行" in r.output and "上级编码" in r.output and "名称" in r.output
    assert "（空）" in cli("orgs", "tree").output


def test_bad_schedule_names_the_stage(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "orgs.csv"
    csv.write_text(CSV, encoding="utf-8")
    cli("import-orgs", str(csv))
    schedule = tmp_path / "s.yaml"
    schedule.write_text("pledge: {days: 0}\n", encoding="utf-8")
    r = cli(
        "campaign",
        "launch",
        "--template",
        "chuangxian_zhengyou",
        "--root",
        "B",
        "--schedule",
        str(schedule),
    )
    assert r.exit_code == 2 and "schedule.pledge" in r.output


def test_demo_twice(cli) -> None:  # type: ignore[no-untyped-def]
    first = cli("demo")
    assert first.exit_code == 0, first.output
    assert "dangjian2026" in first.output and "zuzhike" in first.output
    second = cli("demo")
    assert second.exit_code == 0 and "已存在" in second.output
    status = cli("campaign", "status", "1")
    assert "共 21 个支部的创建进度" in status.output
    assert "逾期" in status.output and "待审批" in status.output
    assert cli("campaign", "list").output.count("创先争优（演示）") == 1
    assert cli("audit", "verify").exit_code == 0


def test_unreachable_database_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    result = CliRunner().invoke(main, ["campaign", "list"])
    assert result.exit_code == 1
    assert "无法访问数据库" in result.output and "Traceback" not in result.output


def test_calendar_commands(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("calendar", "check", "2024")
    assert r.exit_code == 0 and "有官方节假日数据" in r.output
    r = cli("calendar", "override", "2031-01-02", "--holiday", "--note", "临时调整")
    assert r.exit_code == 0
    r = cli("calendar", "check", "2031")
    assert "尚无官方节假日数据" in r.output and "已自定义 1 天" in r.output
    assert cli("calendar", "override", "2031-13-02", "--holiday").exit_code == 2


def test_templates_commands() -> None:
    runner = CliRunner()
    listing = runner.invoke(main, ["templates", "list"])
    assert listing.exit_code == 0
    assert "宣传发动 → 公开承诺 → 全面争创 → 领导点评 → 群众评议 → 评选表彰" in listing.output
    shown = runner.invoke(main, ["templates", "show", "jinwei_shengji"])
    assert "至少 10 份群众评议表（且不少于党员人数的 0.8 倍）" in shown.output
    assert "审批：上级 → 最近的党委" in shown.output and "录入评定等次" in shown.output
    sqsy = runner.invoke(main, ["templates", "show", "sqsy_fuwuxing"]).output
    assert "[08-01 ~ 12-25]" in sqsy and "至少 1 项自查报告（材料）" in sqsy
    mermaid = runner.invoke(main, ["templates", "show", "chuangxian_zhengyou", "--mermaid"])
    assert mermaid.output.startswith("stateDiagram-v2")
    missing = runner.invoke(main, ["templates", "show", "nope"])
    assert missing.exit_code == 1 and "没有这个模板" in missing.output


def test_notify_commands(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.stand_ins import RobotServer

    csv = tmp_path / "orgs.csv"
    csv.write_text(CSV, encoding="utf-8")
    assert cli("import-orgs", str(csv)).exit_code == 0
    code = CSV.splitlines()[1].split(",")[0]
    with (
        RobotServer("dingtalk", key="cli-token-1", secret="SECcli") as ding,
        RobotServer("webhook") as hook,
    ):
        r = cli(
            "notify",
            "channel",
            "add",
            "--org",
            code,
            "--kind",
            "dingtalk",
            "--url",
            ding.url,
            "--secret",
            "SECcli",
        )
        assert r.exit_code == 0, r.output
        assert "cli-token-1" not in r.output
        r = cli(
            "notify",
            "channel",
            "add",
            "--org",
            code,
            "--kind",
            "webhook",
            "--url",
            hook.url,
            "--quiet-hours",
            "22:00-07:00",
        )
        assert r.exit_code == 0, r.output
        listed = cli("notify", "channel", "list", "--org", code).output
        assert "钉钉群机器人" in listed and "SECcli" not in listed and "22:00-07:00" in listed
        r = cli("notify", "test", "--org", code)
        assert r.exit_code == 0, r.output
        assert r.output.count("✓") == 2
        assert len(ding.accepted()) == 1 and len(hook.accepted()) == 1
        assert "测试" in hook.accepted()[0].json["title"]
        bad = cli("notify", "channel", "add", "--org", code, "--kind", "wecom", "--url", "x y")
        assert bad.exit_code == 2
    r = cli("notify", "send-pending", "--all")
    assert r.exit_code == 0 and "处理" in r.output
    assert "没有失败的投递" in cli("notify", "failures").output
