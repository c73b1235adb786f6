"""Who may see and do what on the staff queue: the fixed set of roles and the team scope.

The one place that decides it, for the staff page and the ``carepath tasks`` commands alike:

============== ==================== ==================== ======================== ===================
role           tasks it sees        unmask a contact     claim / note / close     record a consent
============== ==================== ==================== ======================== ===================
nurse          its teams'           its teams' tasks     its teams' tasks         its teams' patients
head_nurse     its teams'           its teams' tasks     its teams' tasks         its teams' patients
health_manager its teams'           its teams' tasks     its teams' tasks         its teams' patients
doctor         its teams'           its teams' tasks     its teams' tasks         its teams' patients
operations     every team's, masked never                never                    never
administrator  every team's, masked never                never                    never
============== ==================== ==================== ======================== ===================

Operations watch the queues' backlog and SLAs; administrators manage accounts and sessions: neither
calls patients, so neither ever sees a contact in clear nor changes a task (least privilege). Every
unmasking is written to the audit log with the member, their role, the patient and the surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping

if TYPE_CHECKING:
    from carepath.teams import StaffMember

#: the roles a staff account may have (``role`` of ``[staff.NAME]``)
ROLES = ("nurse", "head_nurse", "health_manager", "doctor", "operations", "administrator")
Role = Literal["nurse", "head_nurse", "health_manager", "doctor", "operations", "administrator"]
#: roles that call patients: they see, unmask and work the tasks of their own teams only
CARE_ROLES = frozenset({"nurse", "head_nurse", "health_manager", "doctor"})
#: roles that oversee every team's queue, masked and read-only
OVERSIGHT_ROLES = frozenset({"operations", "administrator"})

Action = Literal["view", "unmask", "claim", "note", "close", "consent"]
_VERBS = {"view": "see", "unmask": "unmask the contact of", "claim": "claim", "note": "add a note to",
          "close": "close", "consent": "record a consent for the patient of"}


class AccessDenied(Exception):
    """A staff member asked for something their role or teams do not allow (the message says which)."""


@dataclass(frozen=True)
class Member:
    """A staff member as the access rules see them: name, role, teams and the zone their times show in."""

    name: str
    role: str
    teams: tuple[str, ...]
    timezone: str = "Asia/Shanghai"

    @property
    def team(self) -> str:
        """The first team (shown beside the name); ``""`` for an oversight role without a team."""
        return self.teams[0] if self.teams else ""

    @property
    def sees_every_team(self) -> bool:
        return self.role in OVERSIGHT_ROLES

    def visible_teams(self) -> tuple[str, ...] | None:
        """The teams whose tasks the member sees; ``None``: every team."""
        return None if self.sees_every_team else self.teams

    def allows(self, action: Action, team: str | None) -> bool:
        """Whether the member may ``action`` a task of ``team``."""
        if action == "view":
            return self.sees_every_team or team in self.teams
        return self.role in CARE_ROLES and team in self.teams

    def check(self, action: Action, team: str | None, what: str) -> None:
        """:class:`AccessDenied` naming the member, role and ``what`` (``task 7``) unless allowed."""
        if self.allows(action, team):
            return
        if self.role in CARE_ROLES:
            why = f"it belongs to team {team!r}, not to {', '.join(self.teams) or 'any team of yours'}"
        else:
            why = f"the {self.role} role oversees the queues read-only and never sees a contact in clear"
        raise AccessDenied(f"{self.name} ({self.role}) may not {_VERBS[action]} {what}: {why}")


def member_of(name: str, account: "StaffMember", zones: Mapping[str, str] | None = None) -> Member:
    """The :class:`Member` for configured account ``name`` (``zones``: team -> time zone)."""
    teams = account.member_teams()
    zone = (zones or {}).get(teams[0], "Asia/Shanghai") if teams else "Asia/Shanghai"
    return Member(name, account.role, teams, zone)
