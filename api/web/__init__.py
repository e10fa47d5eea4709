"""Server-rendered pages (Jinja2, Chinese) beside the JSON API: same services, same reach.

`install(app)` mounts the static files and every page router. Page modules:

* `session`   – cookie sessions, CSRF, `page_actor`, `render`, flash messages (shared plumbing)
* `auth`      – /login, /logout
* `desk`      – / (工作台)
* `runs`      – /runs/{id} and its forms
* `approvals` – /approvals (each decision through a confirmation page, `confirm`)
* `approvals_batch` – /approvals/batch (批量审批), /approvals/opinions (常用意见)
* `dashboard` – /campaigns, /campaigns/{id}
* `launch`    – /campaigns/new
* `orgs`      – /orgs, /orgs/{id}, import, users and grants
* `attachments` – /evidence/{id}/attachments (upload form), /files/{id}: evidence files
* `members`   – /orgs/{id}/members: the roster (党员名册) and its import
* `notices`   – /notices (消息中心), /bulletins/{id}: every notice, read/resolved, links
* `account`   – /account/password (修改密码), /orgs/{id}/users/{id}/password (重置密码)
* `sso`       – /account (我的账号), sign-in with WeCom, DingTalk or Feishu (/sso/…)
* `bulk`      – /runs/{id}/commitments, /runs/{id}/meeting: entry from the roster (党员名册)
* `board`     – /runs/{id}/board, /campaigns/{id}/boards: publishing 公示 boards, their 意见箱
* `public_board` – /b/{token}: the public 公示 board (no login)
* `survey`    – /runs/{id}/survey: 群众评议问卷 (open, results, close, print codes, paper entry)
* `public_survey` – /s/{token}: the public survey form and receipt check (no login)
* `ledger`    – /runs/{id}/ledger.xlsx, /campaigns/{id}/ledger → /jobs/{id}, /d/{token}: 台账 exports
* `bulletins` – /orgs/{id}/bulletins (简报与通报存档), /bulletins/{id}/pdf, /circulars/{id}[/pdf]
* `supervision` – /supervision (督导: findings, 通报 form), /findings/{id}: answer and close
"""

from __future__ import annotations

from fastapi import FastAPI

from api.web import (
    account,
    approvals,
    approvals_batch,
    attachments,
    auth,
    board,
    bulk,
    bulletins,
    calendar,
    dashboard,
    desk,
    evidence,
    launch,
    ledger,
    members,
    notices,
    orgs,
    public_board,
    public_survey,
    runs,
    session,
    sso,
    supervision,
    survey,
)

PAGES = (
    auth,
    desk,
    runs,
    approvals,
    approvals_batch,
    dashboard,
    launch,
    orgs,
    bulk,
    attachments,
    evidence,
    members,
    notices,
    account,
    sso,
    board,
    public_board,
    survey,
    public_survey,
    calendar,
    ledger,
    bulletins,
    supervision,
)


#: Page routers matched before the JSON API's (`install_first`): public pages answered in bursts.
FIRST = (public_survey,)


def install_first(app: FastAPI) -> None:
    """Include the `FIRST` page routers (call from `create_app` before the API's routers)."""
    for module in FIRST:
        app.include_router(module.router)


def install(app: FastAPI) -> None:
    """Mount `/static` and include every other page router (call from `create_app`)."""
    session.install(app)
    for module in PAGES:
        if module not in FIRST:
            app.include_router(module.router)
