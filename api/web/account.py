"""Account pages: 修改密码 for oneself, and an admin's or organiser's 重置密码 for another.

* `/account/password` – old, new and repeated new password; every other session of the user is
  revoked, the current one stays. An account with an initial or reset password is sent here
  after log-in and may open no other page until it has chosen its own (`session.py`).
* `/orgs/{org_id}/users/{user_id}/password` – a confirmation page, then a new random initial
  password shown once. Reach (`states.accounts.reset_target`): the user holds a grant on the
  organisation or below, and the actor manages every grant she holds; otherwise the 404 page.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from api.clientaddr import client_address
from api.deps import IdPath, engine_of
from api.web.session import (
    csrf_protect,
    flash,
    form_fields,
    page_actor,
    redirect,
    render,
    safe_next,
    session_token,
)
from states.accounts import (
    MAX_LENGTH,
    MIN_LENGTH,
    change_own_password,
    reset_password,
    reset_target,
)
from states.db import read_session, unit_of_work
from states.errors import InvalidInput, NotFound, RateLimited
from states.models import Organisation
from states.users import Actor

router = APIRouter(include_in_schema=False)
PASSWORD_PAGE = "/account/password"


def _password_page(
    request: Request,
    actor: Actor,
    *,
    next_url: str,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "next": next_url,
        "errors": errors or {},
        "forced": actor.must_change_password,
        "min_length": MIN_LENGTH,
        "max_length": MAX_LENGTH,
    }
    return render(request, "account_password.html", context, status_code=status_code)


@router.get(PASSWORD_PAGE, response_class=HTMLResponse)
def password_form(request: Request, actor: Annotated[Actor, Depends(page_actor)]) -> HTMLResponse:
    """The 修改密码 form."""
    return _password_page(request, actor, next_url=safe_next(request.query_params.get("next")))


@router.post(PASSWORD_PAGE, dependencies=[Depends(csrf_protect)])
def change_password(
    request: Request,
    actor: Annotated[Actor, Depends(page_actor)],
    form: Annotated[dict[str, str], Depends(form_fields)],
) -> Response:
    """Check the old password (rate-limited like log-in), set the new one, end other sessions."""
    next_url = safe_next(form.get("next"))
    old, new, again = (form.get(k, "")[:256] for k in ("old_password", "new_password", "repeat"))
    errors = _missing(old, new, again)
    if not errors:
        errors = _change(request, actor, old, new)
    if errors:
        status = 429 if "limit" in errors else 422
        return _password_page(request, actor, next_url=next_url, errors=errors, status_code=status)
    flash(request, "密码已修改；在其他设备上的登录已全部退出")
    return redirect(next_url)


def _missing(old: str, new: str, again: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not old:
        errors["old_password"] = "请输入原密码"
    if not new:
        errors["new_password"] = "请输入新密码"
    elif new != again:
        errors["repeat"] = "两次输入的新密码不一致"
    return errors


def _change(request: Request, actor: Actor, old: str, new: str) -> dict[str, str]:
    """Change the password; return the errors by field (empty on success)."""
    try:
        change_own_password(
            engine_of(request),
            user_id=actor.user_id,
            client=client_address(request),
            old_password=old,
            new_password=new,
            keep_token=session_token(request),
        )
    except RateLimited as exc:
        minutes = max(1, math.ceil(exc.retry_after / 60))
        return {"limit": f"尝试过多，请 {minutes} 分钟后再试", "old_password": "原密码错误次数过多"}
    except InvalidInput as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        problems = details.get("problems")
        message = "；".join(problems) if isinstance(problems, list) else exc.message
        return {str(details.get("field") or "new_password"): message}
    return {}


# --------------------------------------------------------------------------- admin reset


def _target(request: Request, actor: Actor, org_id: int, user_id: int) -> tuple[str, str, str]:
    """(organisation name, user name, display name) of a user the actor may reset, else 404."""
    with read_session(engine_of(request)) as s:
        org = s.get(Organisation, org_id)
        if org is None or not actor.reaches(org.path):
            raise NotFound("组织不存在")
        user = reset_target(s, actor, org, user_id)
        return org.name, user.username, user.display_name


@router.get("/orgs/{org_id}/users/{user_id}/password", response_class=HTMLResponse)
def reset_confirm(
    request: Request,
    org_id: IdPath,
    user_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
) -> HTMLResponse:
    """Ask before resetting: what will happen, and a button."""
    org_name, username, name = _target(request, actor, org_id, user_id)
    context = {"org_id": org_id, "user_id": user_id, "org_name": org_name}
    context |= {"username": username, "name": name, "password": None}
    return render(request, "account_reset.html", context)


@router.post(
    "/orgs/{org_id}/users/{user_id}/password",
    response_class=HTMLResponse,
    dependencies=[Depends(csrf_protect)],
)
def reset(
    request: Request,
    org_id: IdPath,
    user_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
) -> HTMLResponse:
    """Reset and show the new initial password once (the page is never cached)."""
    with unit_of_work(engine_of(request)) as s:
        org = s.get(Organisation, org_id)
        if org is None or not actor.reaches(org.path):
            raise NotFound("组织不存在")
        user = reset_target(s, actor, org, user_id)
        password = reset_password(s, user, actor_id=actor.user_id)
        context = {"org_id": org_id, "user_id": user_id, "org_name": org.name}
        context |= {"username": user.username, "name": user.display_name, "password": password}
    return render(request, "account_reset.html", context)
