"""The `dangjian` command line, one module per command group (see `api.cli.base` for the root).

Commands load lazily so that `dangjian --help` starts fast: `COMMANDS` names each top-level
command, the module that defines it (importing it registers the command on `main`) and its
one-line help, shown by `--help` without importing anything. A new command is one line here;
tests/test_cli_startup.py checks the table against the modules.
"""

from __future__ import annotations

from api.cli.base import Lazy, main

COMMANDS: dict[str, Lazy] = {
    "audit": Lazy("api.cli.audit", "审计日志 / the audit log."),
    "calendar": Lazy("api.cli.audit", "工作日历 / the working-day calendar."),
    "campaign": Lazy("api.cli.campaigns", "创建活动 / campaigns."),
    "db": Lazy("api.cli.db", "数据库结构 / database schema."),
    "demo": Lazy(
        "api.cli.demo",
        "建立演示数据（可重复运行）并列出全部演示账号 / build the demo and list every log-in.",
    ),
    "deploy": Lazy(
        "api.cli.timed",
        "多台机器：把全部流程登记到工作池（带计划）/ register every flow on a work pool.",
    ),
    "export": Lazy("api.cli.export", "导出 / exports (台账 workbooks)."),
    "import-orgs": Lazy(
        "api.cli.orgs",
        "从 CSV 或 XLSX 导入组织树（按编码幂等）/ import the organisation tree (idempotent by code).",
    ),
    "members": Lazy("api.cli.members", "党员名册 / the member roster."),
    "notify": Lazy(
        "api.cli.notify", "通知：渠道、发送、测试 / notifications: channels, delivery, tests."
    ),
    "orgs": Lazy("api.cli.orgs", "组织树 / the organisation tree."),
    "serve": Lazy(
        "api.cli.serve",
        "启动网页与 JSON 接口服务 / serve the web pages and the JSON API (uvicorn).",
    ),
    "sweep": Lazy(
        "api.cli.timed",
        "按给定时间运行一次截止提醒、督办、阶段开启等流程 / run the timed flows once.",
    ),
    "templates": Lazy("api.cli.templates", "活动模板 / campaign templates."),
    "users": Lazy("api.cli.users", "用户与授权 / users and role grants."),
    "worker": Lazy(
        "api.cli.timed",
        "按计划运行全部定时流程（截止提醒、督办、审批超时、阶段、简报、发送通知）/ run the schedules.",
    ),
}
main.lazy = COMMANDS

__all__ = ["COMMANDS", "main"]
