"""Who may see what of the roster, and who may import it.

* Seeing a member: anyone who reaches her branch (reach is `Actor.reaches`, as everywhere).
* Her full phone number: the branch's own secretary (a secretary grant on exactly the branch),
  and committee members, organisers and admins on the branch or any organisation above it.
  Everyone else who reaches her (supervisors, secretaries of other organisations that a
  committee grant does not cover) sees it masked: 138****1234.
* Importing a roster: organisers and admins into any branch in their subtree; a branch's
  secretary into her own branch only. The import's rows must also lie under the organisation
  the import was started on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from states.members.rows import mask_phone
from states.models import Organisation, Role
from states.orgs import is_within
from states.sheets import SheetLimits
from states.users import Actor

PHONE_ROLES = frozenset({Role.COMMITTEE, Role.ORGANISER, Role.ADMIN})
IMPORT_ROLES = frozenset({Role.ORGANISER, Role.ADMIN})


def sees_phone(actor: Actor, org_id: int, org_path: str) -> bool:
    """Whether `actor` sees the full phone numbers of the branch at (`org_id`, `org_path`)."""
    return actor.holds_on(org_id, {Role.SECRETARY}) or actor.holds_here_or_above(
        org_id, org_path, PHONE_ROLES
    )


def shown_phone(phone: str | None, full: bool) -> str | None:
    """The phone as this caller may see it."""
    return phone if full else mask_phone(phone)


def may_import(actor: Actor, org: Organisation) -> bool:
    """Whether `actor` may import a roster on `org` (organisers/admins above, its secretary)."""
    return actor.holds_here_or_above(org.id or 0, org.path, IMPORT_ROLES) or actor.holds_on(
        org.id or 0, {Role.SECRETARY}
    )


def import_scope(actor: Actor, org: Organisation) -> Callable[[str], bool]:
    """Where an import started on `org` by `actor` may put members (by organisation path)."""
    managed = [g.org_path for g in actor.grants if g.role in IMPORT_ROLES]
    own = {g.org_path for g in actor.grants if g.role == Role.SECRETARY}

    def allowed(path: str) -> bool:
        if not is_within(path, org.path):
            return False
        return path in own or any(is_within(path, m) for m in managed)

    return allowed


def limits_for_rows(rows: int, base: SheetLimits | None = None) -> SheetLimits:
    """Sheet limits scaled for `rows` data rows (the operator's CLI only; never for uploads):
    about 256 bytes and 12 cells per row, never below the defaults."""
    base = base or SheetLimits.from_env()
    return replace(
        base,
        max_rows=rows,
        max_bytes=max(base.max_bytes, rows * 256),
        max_entry_bytes=max(base.max_entry_bytes, rows * 1024),
        max_unpacked_bytes=max(base.max_unpacked_bytes, rows * 2048),
        max_cells=max(base.max_cells, rows * 12),
        max_total_chars=max(base.max_total_chars, rows * 256),
    )


def suffix_ok(name: str) -> bool:
    """Whether a file name has a suffix the roster import reads."""
    return Path(name).suffix.lower() in (".csv", ".xlsx", ".xlsm")
