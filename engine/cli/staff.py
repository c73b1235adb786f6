"""``carepath staff list|sessions|revoke``: staff accounts and their staff page logins."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, ExitCode, cli_config, fail, out_console, print_json

app = typer.Typer(help="Staff accounts, roles and teams; their logins (sessions) and revoking them.",
                  no_args_is_help=True, add_completion=False)
JSON = typer.Option(False, "--json", help="print JSON instead of a table")


@app.command("list")
def list_accounts(as_json: bool = JSON, config: Optional[Path] = CONFIG_OPTION) -> None:
    """Every account: role, teams and where it comes from (carepath.toml, the staff file, a directory)."""
    loaded = cli_config(config)
    rows = [{"name": name, "role": account.role, "teams": list(account.member_teams()),
             "from": loaded.staff_origin.get(name, "carepath.toml")} for name, account in sorted(loaded.staff.items())]
    if as_json:
        print_json({"staff": rows})
        return
    table = Table("name", "role", "teams", "from", title=f"staff ({len(rows)})")
    for row in rows:
        table.add_row(row["name"], row["role"], ", ".join(row["teams"]) or "(every team, read-only)", row["from"])
    out_console().print(table)


def _engine(db: Optional[str], config: Optional[Path]):
    from carepath.cli.common import open_cli_engine, open_cli_store

    open_cli_store(db, read_only=True).db.dispose()  # an existing database only: none is created here
    return open_cli_engine(db, config, runs_journeys=False)


@app.command("sessions")
def list_sessions(name: Optional[str] = typer.Argument(None, help="only this member's sessions"),
                  as_json: bool = JSON, config: Optional[Path] = CONFIG_OPTION,
                  db: Optional[str] = DB_OPTION) -> None:
    """Staff page logins, newest first: live, expired or revoked (never the token)."""
    from carepath.staff_sessions import sessions

    engine = _engine(db, config)
    try:
        now, found = engine.clock.now(), sessions(engine, name)
    finally:
        engine.close()
    rows = [{"id": s.id, "member": s.member, "source": s.source, "issued_at": s.issued_at.isoformat(),
             "expires_at": s.expires_at.isoformat(), "state": "live" if s.live(now) else (
                 f"revoked by {s.revoked_by}" if s.revoked_at else "expired"),
             "revoked_at": s.revoked_at.isoformat() if s.revoked_at else None} for s in found]
    if as_json:
        print_json({"sessions": rows})
        return
    table = Table("id", "member", "from", "issued (UTC)", "expires (UTC)", "state", title="staff sessions")
    for row in rows:
        table.add_row(str(row["id"]), row["member"], row["source"] or "", row["issued_at"][:16],
                      row["expires_at"][:16], row["state"])
    out_console().print(table)


@app.command("revoke")
def revoke(name: Optional[str] = typer.Argument(None, help="end every live session of this member"),
           session: Optional[int] = typer.Option(None, "--session", help="end only this session (an id of "
                                                                           "`carepath staff sessions`)"),
           by: Optional[str] = typer.Option(None, "--by", help="who revokes (recorded in the audit log; "
                                                               "default: cli:<your login name>)"),
           config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """End staff page logins at once: a lost phone, a member who left. Audit-logged."""
    from carepath.staff_sessions import revoke as end

    if (name is None) == (session is None):
        fail("give a member's name or --session ID (not both)", ExitCode.USAGE)
    engine = _engine(db, config)
    try:
        ended = end(engine, by=by or f"cli:{getpass.getuser()}", member=name, session_id=session)
    finally:
        engine.close()
    what = f"session {session}" if session is not None else f"{name}'s sessions"
    out_console().print(f"revoked {ended} live session(s) ({what})" if ended else f"no live session to revoke ({what})")
