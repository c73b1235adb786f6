"""Who an openid is: patient look-up and binding, through the engine's database."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timezone
from typing import Any

from carepath.runtime.patients import bind_openid, patients_by_openid

from carepath.connectors.wechat import binding
from carepath.connectors.wechat.state import insert_new

log = logging.getLogger(__name__)


class EngineDirectory:
    """The :class:`~carepath.connectors.wechat.callbacks.Directory` of one connector; empty until bound."""

    def __init__(self, connector: str) -> None:
        self.connector = connector
        self.engine: Any = None

    def sign(self, text: str) -> str:
        """A keyed hash with the engine's secret key (binding tokens are signed with it)."""
        return self._engine().cipher.lookup_hash(f"wechat-binding|{self.connector}|{text}")

    def issue_token(self, patient_id: int, ttl: int) -> str:
        """A one-time binding token for ``patient_id``, valid ``ttl`` seconds."""
        return binding.issue(self.sign, patient_id, time.time() + ttl)

    def patients(self, openid: str) -> list[str]:
        if self.engine is None or not openid:
            return []
        with self.engine.db.connect() as conn:
            return [mrn for _, mrn in patients_by_openid(conn, self.engine.cipher, openid)]

    def openid_key(self, openid: str) -> str:
        if self.engine is None:
            return hashlib.sha256(openid.encode()).hexdigest()
        return self.engine.cipher.lookup_hash(openid) or "-"

    def bind(self, token: str, openid: str) -> None:
        if self.engine is None:
            log.warning("wechat %s: binding token ignored (connector not bound to an engine)", self.connector)
            return
        try:
            found = binding.verify(self.sign, token, time.time())
        except binding.BindingError as exc:
            log.warning("wechat %s: binding refused: %s", self.connector, exc)
            return
        who = self.openid_key(openid)
        now = datetime.now(timezone.utc)
        with self.engine.db.begin() as conn:
            if not insert_new(conn, self.connector, f"binding:{found.nonce}", who, now):
                log.info("wechat %s: binding token already used (a retried push changes nothing)", self.connector)
                return
            if not bind_openid(conn, self.engine.cipher, found.patient_id, openid, now,
                               actor=f"wechat:{self.connector}"):
                log.warning("wechat %s: binding token names no patient", self.connector)
                return
        log.info("wechat %s: openid bound to patient %s", self.connector, found.patient_id)

    def _engine(self) -> Any:
        if self.engine is None:
            raise RuntimeError(f"wechat connector {self.connector!r} is not bound to an engine")
        return self.engine
