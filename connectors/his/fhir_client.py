"""A small FHIR R4 REST reader: searches with paging, reads by reference, errors classified."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import requests

from carepath.plugins.contracts import SourceUnavailable


class FhirRequestError(Exception):
    """The server refused the request (4xx other than 408/429): a configuration problem, not transient."""


class FhirClient:
    """GETs against one FHIR base URL with a timeout; 5xx, 408, 429 and network trouble are ``SourceUnavailable``."""

    def __init__(self, base_url: str, *, timeout: float, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/fhir+json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, url: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One JSON resource or bundle; ``url`` is absolute or relative to the base."""
        full = url if url.startswith(("http://", "https://")) else f"{self.base_url}/{url.lstrip('/')}"
        try:
            response = self.session.get(full, params=params, timeout=self.timeout)
        except requests.Timeout:
            raise SourceUnavailable(f"FHIR server did not answer within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise SourceUnavailable(f"FHIR server unreachable: {type(exc).__name__}") from None
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise SourceUnavailable(f"FHIR server answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise FhirRequestError(f"FHIR server refused {response.request.path_url}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise SourceUnavailable("FHIR server answered with something that is not JSON") from None

    def search(self, resource_type: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every page of a search, following ``link[relation=next]``."""
        bundle = self.get(resource_type, params)
        while True:
            yield bundle
            nxt = next((link.get("url") for link in bundle.get("link") or [] if link.get("relation") == "next"), None)
            if not nxt:
                return
            bundle = self.get(nxt)
