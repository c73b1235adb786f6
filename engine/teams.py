"""Who works the staff queue: teams (escalation chain, working hours), staff members, survey links.

``carepath.toml``::

    [teams.nursing]
    escalation = ["nurse", "head_nurse", "patient_service"]   # who a breached task goes to next
    first_response = "2h"           # a task must be claimed within this (working) time
    working_hours = "08:00-17:30"   # SLAs count only these hours, on these days ...
    workdays = [1, 2, 3, 4, 5]      # ... (ISO weekdays); leave both out for round the clock
    calendar = "china"              # public holidays off, adjusted working days (调休) on; "none": workdays only
    timezone = "Asia/Shanghai"

    [staff.wang-li]
    team = "nursing"
    role = "nurse"
    token = {env = "STAFF_WANG_LI_TOKEN"}    # the staff page login token

    [surveys]
    link_ttl = "14d"                # how long a survey link works ([web] public_url: where it points)
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from carepath.definition.durations import Duration
from carepath.definition.events import check_zone
from carepath.staff_access import CARE_ROLES, Role

_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class TeamConfig(BaseModel):
    """One team's queue rules."""

    model_config = ConfigDict(extra="forbid")

    escalation: list[str] = Field(default_factory=lambda: ["staff"], min_length=1,
                                  description="roles a task goes to in turn when its SLA is breached")
    first_response: Duration | None = Field(None, description="time to claim a task (in working time)")
    working_hours: str | None = Field(None, description='"HH:MM-HH:MM"; SLAs count only these hours')
    workdays: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7],
                                description="ISO weekdays that count (1 = Monday)")
    calendar: Literal["china", "none"] = Field(
        "china", description="china: the official calendar of mainland China overrides workdays (public "
                             "holidays are off, adjusted working days are on); none: workdays only. "
                             "A round-the-clock team (no working_hours, every weekday) never pauses")
    timezone: str = "Asia/Shanghai"

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = _HOURS.match(v)
        if not m or int(m[2]) > 59 or int(m[4]) > 59 \
                or not (int(m[1]), int(m[2])) < (int(m[3]), int(m[4])) <= (24, 0):
            raise ValueError('write working hours as "08:00-17:30" (start before end)')
        return v

    @field_validator("workdays")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if not v or any(d not in range(1, 8) for d in v):
            raise ValueError("workdays are ISO weekday numbers 1 (Monday) to 7 (Sunday), at least one")
        return sorted(set(v))

    _zone = field_validator("timezone")(lambda v: check_zone(v))

    @property
    def round_the_clock(self) -> bool:
        """No working hours and every weekday: deadlines are plain elapsed time."""
        return self.working_hours is None and len(self.workdays) == 7

    def is_working_day(self, day: date) -> bool:
        """Whether the team works on local date ``day``: its weekdays, with the official calendar's public
        holidays off and adjusted working days on (``calendar = "china"``)."""
        if self.calendar == "china":
            from carepath.runtime.workdays import official_day

            kind = official_day(day)
            if kind is not None:
                return kind == "adjusted_workday"
        return day.isoweekday() in self.workdays

    def hours(self) -> tuple[time, time] | None:
        """The working day's start and end, or ``None`` for round the clock."""
        if self.working_hours is None:
            return None
        m = _HOURS.match(self.working_hours)
        assert m is not None
        end = time(23, 59, 59, 999999) if (m[3], m[4]) == ("24", "00") else time(int(m[3]), int(m[4]))
        return time(int(m[1]), int(m[2])), end


class StaffMember(BaseModel):
    """A staff account: role (one of :data:`carepath.staff_access.ROLES`), teams and login secret."""

    model_config = ConfigDict(extra="forbid")

    team: str | None = Field(None, description="the member's team (a care role needs at least one)")
    teams: list[str] = Field(default_factory=list, description="further teams the member works for")
    role: Role = Field("nurse", description="nurse, head_nurse, health_manager, doctor, operations or "
                                            "administrator (see docs/security.md, Staff roles)")
    token: SecretStr = Field(min_length=16, description="login secret for the staff page (an environment "
                                                        "reference); logging in gives an expiring session")

    @model_validator(mode="after")
    def _teams(self) -> "StaffMember":
        if self.role in CARE_ROLES and not self.member_teams():
            raise ValueError(f"a {self.role} needs a team (team = \"...\" or teams = [...])")
        return self

    def member_teams(self) -> tuple[str, ...]:
        """Every team of the member, ``team`` first."""
        return tuple(dict.fromkeys(([self.team] if self.team else []) + self.teams))


class StaffError(Exception):
    """A name that may not act on the staff queue (not a configured ``[staff.NAME]``)."""


def staff_member(staff: Mapping[str, StaffMember], name: str, *, action: str) -> StaffMember:
    """The configured staff member ``name`` who is about to ``action`` (``claim``, ``note``, ``close``,
    ``view``) a task; :class:`StaffError` naming the configured names otherwise.

    Whether the member may do it to a given task is :meth:`carepath.staff_access.Member.check`.
    """
    member = staff.get(name)
    if member is None:
        from carepath.definition.reach import suggest

        if not staff:
            raise StaffError(f"{name!r} cannot {action} tasks: no staff are configured (add [staff.{name}] with "
                             f"team, role and token to carepath.toml)")
        raise StaffError(f"{name!r} is not a configured staff member{suggest(name, staff)} "
                         f"(configured: {', '.join(sorted(staff))}; [staff.NAME] in carepath.toml)")
    return member


class SurveySettings(BaseModel):
    """How long a built-in survey link works (where it points: ``[web] public_url``)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, pattern=r"^https?://",
                                 description="older name of [web] public_url, read for this release")
    link_ttl: Duration = timedelta(days=14)


DEFAULT_TEAM = TeamConfig()
