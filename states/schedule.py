"""Campaign schedules: a deadline per stage, a date or N (working) days after entering it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from states.catalog import DONE, Template
from states.errors import InvalidInput
from states.timeutil import end_of_local_day, local_date
from states.workcal import WorkCalendar, deadline_after_working_days


class StageDeadline(BaseModel):
    """Exactly one of: a date, working days after entry, or calendar days after entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: dt.date | None = None
    working_days: int | None = Field(default=None, ge=1, le=366)
    days: int | None = Field(default=None, ge=1, le=366)

    @model_validator(mode="after")
    def _one(self) -> StageDeadline:
        given = [v for v in (self.date, self.working_days, self.days) if v is not None]
        if len(given) != 1:
            raise ValueError("每个阶段须且只须给出 date、working_days、days 之一")
        return self


def default_schedule(tpl: Template, year: int) -> dict[str, StageDeadline]:
    """Return the template's default schedule; dated phases fall in `year`."""
    out: dict[str, StageDeadline] = {}
    for stage in tpl.stages:
        if stage.phase is not None:
            month, day = (int(x) for x in stage.phase.closes.split("-"))
            out[stage.id] = StageDeadline(date=dt.date(year, month, day))
        elif stage.duration is not None:
            d = stage.duration
            out[stage.id] = (
                StageDeadline(working_days=d.days) if d.working else StageDeadline(days=d.days)
            )
    return out


def parse_schedule(
    tpl: Template, raw: dict[str, Any] | None, year: int
) -> dict[str, StageDeadline]:
    """Merge a user's schedule over the template default; errors name the stage and field."""
    schedule = default_schedule(tpl, year)
    if not raw:
        return schedule
    errors = []
    for stage_id, value in raw.items():
        if stage_id not in tpl.stage_ids:
            errors.append(
                {"field": f"schedule.{stage_id}", "message": f"模板中没有阶段 {stage_id}"}
            )
            continue
        if isinstance(value, (dt.date, str)) and not isinstance(value, dict):
            value = {"date": value}
        try:
            schedule[stage_id] = StageDeadline.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                field = f"schedule.{stage_id}" + (f".{loc}" if loc else "")
                errors.append({"field": field, "message": err["msg"]})
    if errors:
        raise InvalidInput("活动日程有误：" + "；".join(e["field"] for e in errors), details=errors)
    return schedule


def dump_schedule(schedule: dict[str, StageDeadline]) -> dict[str, dict[str, Any]]:
    """Return a JSON-ready schedule."""
    return {k: v.model_dump(mode="json", exclude_none=True) for k, v in schedule.items()}


def deadline_for(
    schedule: dict[str, Any],
    stage: str,
    entered_at: datetime,
    calendar: Callable[[], WorkCalendar],
) -> datetime | None:
    """Return the UTC deadline of `stage` entered at `entered_at`, or None if unscheduled.

    `calendar` is called only when the stage counts working days.
    """
    if stage == DONE or stage not in schedule:
        return None
    spec = StageDeadline.model_validate(schedule[stage])
    if spec.date is not None:
        return end_of_local_day(spec.date)
    if spec.working_days is not None:
        return deadline_after_working_days(entered_at, spec.working_days, calendar())
    assert spec.days is not None
    return end_of_local_day(local_date(entered_at) + timedelta(days=spec.days))
