"""A loopback FHIR R4 server emulator: search by ``_lastUpdated`` with paging and ``_include``, reads, writes.

Tests start it with ``with FhirEmulator() as fhir: ...`` and change its data
with :meth:`FhirEmulator.put`; ``carepath emulator fhir`` runs it with a
synthetic zh_CN data set that keeps changing (bookings, reschedules,
cancellations, discharges, reports), so a poller has something to follow.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

FHIR_JSON = "application/fhir+json"
_REFS = {"Appointment:patient": lambda r: [p.get("actor", {}).get("reference", "") for p in r.get("participant", [])],
         "Encounter:subject": lambda r: [r.get("subject", {}).get("reference", "")],
         "DiagnosticReport:subject": lambda r: [r.get("subject", {}).get("reference", "")],
         "Observation:subject": lambda r: [r.get("subject", {}).get("reference", "")],
         "RelatedPerson:patient": lambda r: [r.get("patient", {}).get("reference", "")]}


def _instant(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class FhirEmulator:
    """An in-memory FHIR server on 127.0.0.1; ``base_url`` is its address."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        self._failures: list[int] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        self._last = datetime.now(timezone.utc)
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self.base_url = f"http://{host}:{self._httpd.server_address[1]}/fhir"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                                        name="fhir-emulator")

    def __enter__(self) -> "FhirEmulator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- data -------------------------------------------------------------------------------

    def put(self, resource: dict[str, Any], *, last_updated: datetime | None = None) -> dict[str, Any]:
        """Create or update a resource (new ``versionId``, ``lastUpdated`` now or as given)."""
        with self._lock:
            kind, rid = resource["resourceType"], str(resource["id"])
            old = self.resources.get((kind, rid))
            version = int(old["meta"]["versionId"]) + 1 if old else 1
            if last_updated is None:  # strictly increasing, like a real server's clock
                last_updated = max(datetime.now(timezone.utc), self._last + timedelta(milliseconds=1))
            self._last = max(self._last, last_updated)
            stored = {**resource, "meta": {"versionId": str(version), "lastUpdated": _instant(last_updated)}}
            self.resources[(kind, rid)] = stored
            return stored

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with HTTP ``status``."""
        with self._lock:
            self._failures.extend([status] * times)

    def notify(self, endpoint: str, secret: str, *, header: str = "X-Carepath-Token",
               resource: dict[str, Any] | None = None) -> requests.Response:
        """Send a Subscription rest-hook notification (empty, or carrying ``resource``) to ``endpoint``."""
        if resource is None:
            return requests.post(endpoint, data=b"", headers={header: secret}, timeout=10)
        url = f"{endpoint.rstrip('/')}/{resource['resourceType']}/{resource['id']}"
        return requests.put(url, data=json.dumps(resource).encode(), timeout=10,
                            headers={header: secret, "Content-Type": FHIR_JSON})

    # -- search -----------------------------------------------------------------------------

    def search(self, kind: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            found = [r for (k, _), r in self.resources.items() if k == kind]
        for raw in query.get("_lastUpdated", []):
            op, value = raw[:2], raw[2:]
            if op not in ("ge", "gt", "le", "lt", "eq"):
                op, value = "eq", raw
            bound = _parse_instant(value)
            test = {"ge": lambda t: t >= bound, "gt": lambda t: t > bound, "le": lambda t: t <= bound,
                    "lt": lambda t: t < bound, "eq": lambda t: t == bound}[op]
            found = [r for r in found if test(_parse_instant(r["meta"]["lastUpdated"]))]
        for subject in query.get("subject", []):
            found = [r for r in found if r.get("subject", {}).get("reference") == subject]
        if query.get("_sort", [""])[0].lstrip("-") == "_lastUpdated":
            found.sort(key=lambda r: (_parse_instant(r["meta"]["lastUpdated"]), r["id"]),
                       reverse=query["_sort"][0].startswith("-"))
        count = int(query.get("_count", ["50"])[0])
        offset = int(query.get("_getpagesoffset", ["0"])[0])
        page = found[offset:offset + count]
        entries = [{"fullUrl": f"{self.base_url}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                   for r in page]
        for include in query.get("_include", []):
            refs = {ref for r in page for ref in _REFS.get(include, lambda _: [])(r) if ref}
            with self._lock:
                included = [self.resources.get(tuple(ref.split("/", 1))) for ref in sorted(refs)]
            entries += [{"fullUrl": f"{self.base_url}/{r['resourceType']}/{r['id']}", "resource": r,
                         "search": {"mode": "include"}} for r in included if r]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                                  "link": [{"relation": "self", "url": f"{self.base_url}/{kind}"}], "entry": entries}
        if offset + count < len(found):
            nxt = {k: v[0] for k, v in query.items()} | {"_getpagesoffset": str(offset + count)}
            bundle["link"].append({"relation": "next", "url": f"{self.base_url}/{kind}?{urlencode(nxt)}"})
        return bundle

    def capability_statement(self) -> dict[str, Any]:
        """``GET /metadata``: what this server is, as a FHIR R4 CapabilityStatement (clients read it first)."""
        searches = [{"name": "_lastUpdated", "type": "date"}, {"name": "_count", "type": "number"}]
        return {
            "resourceType": "CapabilityStatement", "status": "active", "date": _instant(datetime.now(timezone.utc)),
            "publisher": "carepath", "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
            "software": {"name": "carepath FHIR emulator"},
            "implementation": {"description": "loopback FHIR R4 server for tests", "url": self.base_url},
            "rest": [{"mode": "server", "resource": [
                {"type": kind, "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "update"}],
                 "searchParam": searches + ([{"name": "_include", "type": "string"}] if kind != "Patient" else [])}
                for kind in ("Patient", "Appointment", "Encounter", "DiagnosticReport", "Observation",
                             "RelatedPerson")]}],
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", FHIR_JSON)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _failure(self) -> bool:
                emulator.requests.append(f"{self.command} {self.path}")
                if emulator.delay:
                    time.sleep(emulator.delay)
                with emulator._lock:
                    status = emulator._failures.pop(0) if emulator._failures else None
                if status is not None:
                    self._answer(status, _outcome("transient", f"emulated HTTP {status}"))
                return status is not None

            def do_GET(self) -> None:
                if self._failure():
                    return
                url = urlsplit(self.path)
                parts = [p for p in url.path.split("/") if p][1:]  # after /fhir
                if parts == ["metadata"]:
                    self._answer(200, emulator.capability_statement())
                elif len(parts) == 1:
                    self._answer(200, emulator.search(parts[0], parse_qs(url.query)))
                elif len(parts) == 2 and (tuple(parts)) in emulator.resources:
                    self._answer(200, emulator.resources[(parts[0], parts[1])])
                else:
                    self._answer(404, _outcome("not-found", f"no resource at {url.path}"))

            def do_PUT(self) -> None:
                if self._failure():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    resource = json.loads(self.rfile.read(length))
                    stored = emulator.put(resource)
                except (ValueError, KeyError) as exc:
                    self._answer(400, _outcome("invalid", str(exc)))
                    return
                self._answer(200, stored)

            do_POST = do_PUT

        return Handler


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


# -- a synthetic hospital for `carepath emulator fhir` --------------------------------------------

SHANGHAI = timezone(timedelta(hours=8))
DEPARTMENTS = ["心内科", "内分泌科", "消化内科", "呼吸内科", "骨科", "眼科"]


def patient_resource(pid: str, mrn: str, name: str, phone: str, birth: str, gender: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid,
            "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                 "code": "MR"}]}, "value": mrn}],
            "name": [{"text": name}], "telecom": [{"system": "phone", "value": phone}],
            "birthDate": birth, "gender": gender}


def appointment_resource(aid: str, patient_id: str, start: datetime, status: str, department: str) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": aid, "status": status, "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(), "specialty": [{"text": department}],
            "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}]}


class SyntheticHospital:
    """Faker zh_CN patients and a stream of appointment changes on an emulator."""

    def __init__(self, emulator: FhirEmulator, patients: int = 20, seed: int = 7) -> None:
        from faker import Faker

        self.emulator = emulator
        self.rng = random.Random(seed)
        fake = Faker("zh_CN")
        fake.seed_instance(seed)
        self.patients = []
        for n in range(patients):
            pid = f"p{n + 1}"
            emulator.put(patient_resource(pid, f"MRN{n + 1:06d}", fake.name(), fake.phone_number(),
                                          fake.date_of_birth(minimum_age=5, maximum_age=90).isoformat(),
                                          self.rng.choice(["male", "female"])))
            self.patients.append(pid)
        self.appointments: dict[str, dict[str, Any]] = {}

    def step(self) -> str:
        """One change: a booking, a reschedule or a cancellation. Returns what happened."""
        roll = self.rng.random()
        booked = [a for a in self.appointments.values() if a["status"] == "booked"]
        if booked and roll < 0.25:
            appt = self.rng.choice(booked)
            appt["start"] = (datetime.fromisoformat(appt["start"]) + timedelta(days=1)).isoformat()
            self.emulator.put(appt)
            return f"rescheduled Appointment/{appt['id']}"
        if booked and roll < 0.35:
            appt = self.rng.choice(booked)
            appt["status"] = "cancelled"
            self.emulator.put(appt)
            return f"cancelled Appointment/{appt['id']}"
        aid = f"a{len(self.appointments) + 1}"
        start = datetime.now(SHANGHAI).replace(minute=0, second=0, microsecond=0) + timedelta(
            days=self.rng.randrange(1, 8), hours=self.rng.randrange(0, 6))
        appt = appointment_resource(aid, self.rng.choice(self.patients), start, "booked",
                                    self.rng.choice(DEPARTMENTS))
        self.appointments[aid] = appt
        self.emulator.put(appt)
        return f"booked Appointment/{aid}"


def serve(host: str = "127.0.0.1", port: int = 0, *, patients: int = 20, every: float = 5.0) -> None:
    """``carepath emulator fhir``: serve a changing synthetic hospital until interrupted."""
    with FhirEmulator(host, port) as emulator:
        hospital = SyntheticHospital(emulator, patients)
        print(f"FHIR R4 emulator at {emulator.base_url} ({patients} patients; a change every {every:g} s)",
              flush=True)
        while True:
            print(hospital.step(), flush=True)
            time.sleep(every)
