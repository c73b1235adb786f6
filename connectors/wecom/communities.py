"""Community (社群) membership: WeCom customer-group members as patients' tags and portrait facts.

A ``change_external_chat`` callback only says that a group changed; the
members are read with ``groupchat/get``. The bound patients among them are
compared with the members recorded last time (``connector_state`` row
``community:<name>``): a patient who joined gets the tag ``community:<name>``
and the community in their portrait's ``communities`` list; one who left loses
both.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import Connection, select, update

from carepath.runtime.portrait import change_facts
from carepath.store.schema import ConnectorState, Patient

from carepath.connectors.wechat.state import insert_new

TAG_PREFIX = "community:"


def community_tag(name: str) -> str:
    """The tag a member of community ``name`` carries."""
    return TAG_PREFIX + name


def recorded_members(conn: Connection, connector: str, name: str) -> set[int]:
    """Patient ids recorded as members of ``name`` at the last change."""
    value = conn.execute(select(ConnectorState.value).where(ConnectorState.connector == connector,
                                                            ConnectorState.key == f"community:{name}")).scalar()
    return set(json.loads(value)) if value else set()


def sync_members(conn: Connection, cipher: Any, connector: str, name: str, members: Iterable[int],
                 now: datetime) -> tuple[set[int], set[int]]:
    """Record ``members`` (patient ids) as the community's; returns ``(joined, left)``."""
    current = set(members)
    before = recorded_members(conn, connector, name)
    joined, left = current - before, before - current
    key = f"community:{name}"
    insert_new(conn, connector, key, None, now)
    conn.execute(update(ConnectorState).where(ConnectorState.connector == connector, ConnectorState.key == key)
                 .values(value=json.dumps(sorted(current)), updated_at=now))
    for pid in joined:
        _change(conn, cipher, pid, name, True, now)
    for pid in left:
        _change(conn, cipher, pid, name, False, now)
    return joined, left


def _change(conn: Connection, cipher: Any, patient_id: int, name: str, member: bool, now: datetime) -> None:
    tags = set(conn.execute(select(Patient.tags).where(Patient.id == patient_id)).scalar() or [])
    tags = tags | {community_tag(name)} if member else tags - {community_tag(name)}
    conn.execute(update(Patient).where(Patient.id == patient_id).values(tags=sorted(tags), updated_at=now))

    def facts(doc: dict[str, Any]) -> None:
        names = set(doc.get("communities", []))
        doc["communities"] = sorted(names | {name} if member else names - {name})

    change_facts(conn, cipher, patient_id, now, facts)
