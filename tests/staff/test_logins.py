"""Staff page logins: sessions expire and can be revoked; refused logins lock an account and an address."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests

from carepath.config import load_config
from carepath.engine import Engine
from carepath.settings import Settings
from carepath.staff_sessions import LoginRefused, login, session_member
from carepath.web.staff import COOKIE
from tests.staff.conftest import SECRETS


def log_in(url: str, name: str, secret: str) -> requests.Response:
    return requests.post(f"{url}/staff/login", data={"name": name, "token": secret}, allow_redirects=False,
                         timeout=30)


def sees_tasks(url: str, session: str) -> bool:
    page = requests.get(f"{url}/staff", cookies={COOKIE: session}, timeout=30)
    return 'id="tasks"' in page.text


def test_a_login_gives_a_session_that_ends_when_it_expires_or_logs_out(ward, live):
    answer = log_in(live.url, "nurse-a", SECRETS["nurse-a"])
    assert answer.status_code == 303
    session = answer.cookies[COOKIE]
    assert session != SECRETS["nurse-a"]  # the cookie holds a session, never the login secret
    assert sees_tasks(live.url, session)
    assert not sees_tasks(live.url, SECRETS["nurse-a"])  # the secret itself is not a session
    ward.clock.advance(timedelta(hours=11, minutes=59))
    assert sees_tasks(live.url, session)
    ward.clock.advance(timedelta(minutes=2))  # past the 12 h of [accounts] session_ttl
    assert not sees_tasks(live.url, session)

    again = log_in(live.url, "nurse-a", SECRETS["nurse-a"]).cookies[COOKIE]
    requests.post(f"{live.url}/staff/logout", cookies={COOKIE: again}, allow_redirects=False, timeout=30)
    assert not sees_tasks(live.url, again)


def test_refused_logins_lock_the_account_even_for_the_right_secret(ward, live):
    for _ in range(5):
        assert log_in(live.url, "nurse-a", "wrong-secret-guess-000").status_code == 401
    locked = log_in(live.url, "nurse-a", SECRETS["nurse-a"])
    assert locked.status_code == 429 and "登录尝试过多" in locked.text and COOKIE not in locked.cookies
    assert log_in(live.url, "nurse-b", SECRETS["nurse-b"]).status_code == 303  # another account is not locked
    ward.clock.advance(timedelta(minutes=16))  # the 15-minute window has passed
    assert log_in(live.url, "nurse-a", SECRETS["nurse-a"]).status_code == 303


def test_one_address_guessing_across_accounts_is_locked_out(ward):
    # through the engine's login directly: the web guard's own per-address lock-out (10 refusals) would
    # answer first over HTTP
    for i in range(20):
        with pytest.raises(LoginRefused) as refused:
            login(ward.engine, f"guess-{i}", "wrong-secret-guess-000", "203.0.113.9")
        assert not refused.value.locked
    with pytest.raises(LoginRefused) as refused:
        login(ward.engine, "nurse-a", SECRETS["nurse-a"], "203.0.113.9")
    assert refused.value.locked
    assert session_member(ward.engine, login(ward.engine, "nurse-a", SECRETS["nurse-a"], "198.51.100.7")) == "nurse-a"


def test_carepath_staff_revoke_ends_a_members_sessions_at_once(wards, cli, hospital):
    db = wards[0]
    engine = Engine(db, journeys=[], channels={}, settings=Settings(), config=load_config(hospital / "carepath.toml"))
    try:
        first, second = (login(engine, "nurse-a", SECRETS["nurse-a"], "10.0.0.1") for _ in range(2))
        other = login(engine, "nurse-b", SECRETS["nurse-b"], "10.0.0.2")
        revoked = cli("staff", "revoke", "nurse-a", "--by", "admin", "--db", db)
        assert revoked.exit_code == 0 and "revoked 2 live session(s)" in revoked.stdout
        assert session_member(engine, first) is None and session_member(engine, second) is None
        assert session_member(engine, other) == "nurse-b"
        rows = json.loads(cli("staff", "sessions", "--json", "--db", db).stdout)["sessions"]
        assert sorted(r["state"] for r in rows) == ["live", "revoked by admin", "revoked by admin"]
        [live] = [r for r in rows if r["state"] == "live"]
        assert cli("staff", "revoke", "--session", live["id"], "--db", db).exit_code == 0
        assert session_member(engine, other) is None
        assert cli("staff", "revoke", "--db", db).exit_code == 2  # neither a name nor --session
    finally:
        engine.close()


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_one_locked_out(ward):
    from carepath.web.app import create_app
    from carepath.web.limits import InboundLimits
    from tests.live_app import LiveApp

    # the guard's own lock-out (auth_failures) is set above ours, so the staff login limit is what answers
    limits = InboundLimits(trusted_proxies=frozenset({"127.0.0.1"}), auth_failures=1000)
    with LiveApp(create_app(ward.engine, limits=limits, events_token="events-token-Zq8Lr2Xw9Ke4Tn7Vb3Ys")) as live:
        def attempt(forwarded: str, name: str, secret: str) -> int:
            return requests.post(f"{live.url}/staff/login", data={"name": name, "token": secret},
                                 headers={"X-Forwarded-For": forwarded}, allow_redirects=False, timeout=30).status_code

        # source_max_failures: 20 refused logins from one address, whatever the accounts tried
        assert [attempt("203.0.113.9", f"guess-{i}", "wrong-secret-guess-000") for i in range(20)] == [401] * 20
        assert attempt("203.0.113.9", "nurse-a", SECRETS["nurse-a"]) == 429  # that address is locked out
        assert attempt("198.51.100.7", "nurse-a", SECRETS["nurse-a"]) == 303  # the ward's own address is not
