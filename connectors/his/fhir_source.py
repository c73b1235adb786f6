"""The ``fhir`` HIS source: polls a FHIR R4 server by ``_lastUpdated``; receives rest-hook notifications."""

from __future__ import annotations

import hmac
import json
import logging
from datetime import datetime
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator

from carepath.connectors.his import fhir_cursor
from carepath.connectors.his.fhir_client import FhirClient
from carepath.connectors.his.fhir_mapping import FhirProblem, ResourceMapper, icd10_codes, mrn_of, patient_record, version_of
from carepath.connectors.his.hl7_source import Hl7Config
from carepath.plugins.contracts import Capabilities, CallbackRequest, ConnectorConfig, HisSource

log = logging.getLogger(__name__)

ResourceType = Literal["Patient", "Appointment", "Encounter", "DiagnosticReport", "Observation", "RelatedPerson"]
_INCLUDE = {"Appointment": "Appointment:patient", "Encounter": "Encounter:subject",
            "DiagnosticReport": "DiagnosticReport:subject", "Observation": "Observation:subject",
            "RelatedPerson": "RelatedPerson:patient"}


class FhirConfig(ConnectorConfig):
    """``[connectors.NAME] type = "fhir"``."""

    base_url: str = Field(pattern=r"^https?://", description="FHIR R4 base URL")
    system: str = Field("his", min_length=1, description="the hospital system's name: the source of its events")
    resources: list[ResourceType] = Field(default_factory=lambda: ["Patient", "Appointment", "Encounter",
                                                                   "DiagnosticReport", "Observation"],
                                          description="resource types to poll, in this order")
    page_size: int = Field(100, ge=1, le=1000, description="_count per search page")
    timeout: float = Field(10.0, gt=0, le=300, description="seconds to wait for the server")
    interval: float = Field(60.0, ge=5, description="seconds between polls under carepath serve")
    token: SecretStr | None = Field(None, description="bearer token for the FHIR server ({env = ...})")
    webhook_secret: SecretStr | None = Field(None, description="shared secret expected on rest-hook notifications ({env = ...})")
    webhook_header: str = Field("X-Carepath-Token", description="header carrying the shared secret")
    mrn_system: str | None = Field(None, description="identifier system of MRNs when the type is not coded MR")
    vitals: dict[str, str] = Field(default_factory=dict, description="extra Observation codes read as vital signs: code -> kind")
    timezone: str = Field("Asia/Shanghai", description="zone of dates that carry no time (a last menstrual period)")

    _zone = field_validator("timezone")(Hl7Config._zone.__func__)  # an IANA name, as the HL7 source takes


class FhirSource(HisSource):
    """Polls Patient, Appointment, Encounter, DiagnosticReport and Observation since a durable cursor."""

    type_name: ClassVar[str] = "fhir"
    Config = FhirConfig
    capabilities: ClassVar[Capabilities] = Capabilities(network=True, callbacks=True)
    emulator: ClassVar[str | None] = "carepath.connectors.his.fhir_emulator:serve"

    def __init__(self, name: str, config: FhirConfig | None = None) -> None:
        super().__init__(name, config)
        token = self.config.token.get_secret_value() if self.config.token else None
        self.client = FhirClient(self.config.base_url, timeout=self.config.timeout, token=token)
        self.problems: list[str] = []  # resources skipped by the last poll, and why
        self.engine: Any = None

    def bind(self, engine: Any) -> None:
        self.engine = engine

    # -- polling --------------------------------------------------------------------------

    def poll(self, cursor: str | None) -> tuple[list[Any], str | None]:
        cursors = fhir_cursor.load(cursor)
        events: list[Any] = []
        self.problems = []
        for kind in self.config.resources:
            state = cursors.setdefault(kind, fhir_cursor.TypeCursor())
            params: dict[str, Any] = {"_sort": "_lastUpdated", "_count": self.config.page_size}
            if state.since is not None:
                params["_lastUpdated"] = f"ge{state.since.isoformat()}"
            if kind in _INCLUDE:
                params["_include"] = _INCLUDE[kind]
            for bundle in self.client.search(kind, params):
                events.extend(self._page(kind, bundle, state))
        return events, fhir_cursor.dump(cursors)

    def _page(self, kind: str, bundle: dict[str, Any], state: fhir_cursor.TypeCursor) -> list[Any]:
        entries = bundle.get("entry") or []
        included = {f"{e['resource']['resourceType']}/{e['resource'].get('id')}": e["resource"] for e in entries
                    if (e.get("search") or {}).get("mode") == "include" and "resource" in e}
        mapper = self._mapper(included)
        out = []
        for entry in entries:
            resource = entry.get("resource") or {}
            if (entry.get("search") or {}).get("mode", "match") != "match" or resource.get("resourceType") != kind:
                continue
            key = f"{resource.get('id')}/{version_of(resource)}"
            updated = _last_updated(resource)
            if updated is None:
                self.problems.append(f"{kind}/{resource.get('id')}: meta.lastUpdated is missing")
                continue
            if state.since is not None and (updated < state.since or (updated == state.since and key in state.seen)):
                continue
            try:
                out.extend(mapper.events(resource))
            except FhirProblem as exc:  # one bad resource must not stop the feed: reported, then passed
                self.problems.append(str(exc))
                log.warning("FHIR %s skipped: %s", self.name, exc)
            state.advance(updated, key)
        return out

    def _mapper(self, included: dict[str, dict[str, Any]]) -> ResourceMapper:
        cache: dict[str, tuple[str, dict[str, Any]]] = {}

        def patient_of(reference: str) -> tuple[str, dict[str, Any]]:
            if reference not in cache:
                raw = included.get(reference) or self.client.get(reference)
                from fhir.resources.R4B.patient import Patient

                patient = Patient.model_validate(raw)
                conditions = None
                if reference not in included:  # a Patient polled for itself: carry its active diagnoses
                    bundle = self.client.get("Condition", {"subject": reference, "_count": 200})
                    conditions = icd10_codes([e["resource"] for e in bundle.get("entry") or [] if "resource" in e])
                cache[reference] = (mrn_of(patient, self.config.mrn_system), patient_record(patient, conditions))
            return cache[reference]

        return ResourceMapper(self.config.system, patient_of, self.config.vitals, self.config.mrn_system,
                              ZoneInfo(self.config.timezone))

    # -- rest-hook notifications -------------------------------------------------------------

    def verify_callback(self, request: CallbackRequest) -> bool:
        if self.config.webhook_secret is None:
            return False
        given = request.header(self.config.webhook_header)
        return bool(given) and hmac.compare_digest(given.encode(), self.config.webhook_secret.get_secret_value().encode())

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        """A notification with a resource maps it; an empty one (``payload`` not set) asks for a poll."""
        if not request.body.strip():
            return []
        try:
            resource = json.loads(request.body)
        except (ValueError, RecursionError):
            raise ValueError("notification body is not JSON") from None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise ValueError("notification body is not a FHIR resource (a JSON object with a resourceType)")
        if resource["resourceType"] == "Bundle":  # a subscription-notification bundle
            entries = resource.get("entry") or []
            if not isinstance(entries, list):
                raise ValueError("Bundle.entry must be a list")
            resources = [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        else:
            resources = [resource]
        events: list[Any] = []
        for raw in resources:
            included = {f"Patient/{raw['id']}": raw} if raw.get("resourceType") == "Patient" else {}
            events.extend(self._mapper(included).events(raw))
        return events


def _last_updated(resource: dict[str, Any]) -> datetime | None:
    raw = (resource.get("meta") or {}).get("lastUpdated")
    try:
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00")) if raw else None
    except ValueError:
        return None
    return value if value is not None and value.tzinfo is not None else None
