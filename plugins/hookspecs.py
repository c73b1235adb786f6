"""Hook specifications of the ``carepath`` plugin project.

One documented function per hook. Each hook also has a section in
``docs/plugins.md``; ``tests/plugins/test_hookspecs.py`` fails when one is
missing or has no docstring. A plugin module implements any subset of them,
each decorated with :data:`hookimpl`.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "carepath"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def carepath_connectors() -> list[type]:
    """Return connector classes (``Channel``, ``HisSource``, ``SurveyProvider`` subclasses).

    Each class's ``type_name`` is what ``type = "..."`` names in
    ``carepath.toml``; its ``Config`` model validates the rest of the section.
    """


@hookspec
def carepath_journeys() -> list[Any]:
    """Return journeys: ``carepath.definition.model.Journey`` objects or paths to journey YAML files."""


@hookspec
def carepath_templates() -> dict[str, Any]:
    """Return message templates by name (``Template`` objects or dicts with ``body`` and ``title``)."""


@hookspec
def carepath_event_types() -> list[Any]:
    """Return event types the engine does not know yet: ``carepath.definition.catalog.EventType`` objects.

    Each names its type (``device.alarm``), says what it means and gives a
    pydantic payload model (subclass ``carepath.definition.catalog.Payload``;
    a field without a default is required). Journeys may then use the type
    and ``journeys validate`` checks templates against its fields. A built-in
    type cannot be redefined.
    """


@hookspec
def carepath_segments() -> dict[str, str]:
    """Return named segments: segment name -> condition expression over ``patient`` (and ``patient.portrait``),
    or name -> a mapping ``{when, dimension, title, description, sensitive}``.

    Example: ``{"elderly-diabetic": 'patient.age >= 65 and patient.has("E11")'}``.
    Conditions use them as ``patient.in_segment("elderly-diabetic")``; entering or
    leaving one is a ``segment.entered`` / ``segment.left`` event (docs/segments.md).
    """


@hookspec
def carepath_web_routes() -> Any:
    """Return a FastAPI ``APIRouter`` (or a list of them) mounted in the web hooks app.

    Use it for inbound callbacks (delivery receipts, replies, HIS pushes).
    Routes find the configured connectors and the ingest function through
    ``carepath.plugins.web.web_context(request)``, and must authenticate every
    request (``Connector.handle_callback``) before changing anything.
    """


@hookspec
def carepath_before_send(touchpoint: Any, message: Any) -> Any:
    """Inspect a rendered message just before it is sent.

    Return ``None`` to leave it unchanged, a modified ``Message`` (for example
    ``dataclasses.replace(message, body=redacted)``) to redact it, or
    ``carepath.plugins.Veto(reason)`` to stop it; the reason is recorded. The
    implementations run in turn, each seeing the previous one's message; the
    first veto wins.
    """


@hookspec
def carepath_event(event: Any) -> None:
    """Observe every stored event (after deduplication); the return value is ignored.

    Observers must be quick and must not raise: an exception is logged and
    the other observers still run.
    """


@hookspec
def carepath_staff_directory() -> Any:
    """Return staff accounts from the hospital's directory: ``{name: {"team": ..., "role": ..., "token": ...}}``.

    Each account takes the fields of a ``[staff.NAME]`` table (``team`` or ``teams``, ``role`` from the
    fixed set, ``token`` at least 16 characters: the login secret, which a directory plugin fetches
    itself, never from carepath.toml). Called once when the configuration is loaded; a name that
    carepath.toml or the staff file already defines is a configuration problem.
    """


@hookspec
def carepath_encryption_keys() -> dict[str, Any]:
    """Return encryption keys for the key ring: key id -> 32-byte key (``bytes``, or its base64 text).

    A hospital's KMS plugs in here: fetch the data keys at start-up (for example
    decrypting wrapped keys with the KMS) and return them. They join the keys
    from ``CAREPATH_SECRET_KEY``, the key file, ``CAREPATH_KEYS`` and the key
    folder; one key id given two different keys is an error. ``carepath keys
    rotate --to KEYID`` then moves every encrypted value to one of them
    (docs/security.md, "Key rotation").
    """


@hookspec(firstresult=True)
def carepath_classify_message(text: str, channel: str | None, history: list[dict[str, Any]],
                              faq: list[dict[str, Any]]) -> Any:
    """Classify one inbound patient message with the hospital's own NLU or LLM service (issue 21).

    ``text`` is what the patient wrote, ``channel`` the connector it came in on, ``history`` the
    conversation so far (``{"direction": "in"|"out", "text": ..., "at": ISO time}``, oldest first) and
    ``faq`` the hospital's FAQ entries (``{"id", "category", "patterns"}``). Return a mapping
    ``{"intent": "faq", "faq": "<entry id>"}`` (answered with that entry's answer template),
    ``{"intent": "complaint"}``, ``{"intent": "ignorable"}``, ``{"intent": "unrecognised"}`` (a task for the
    health manager), or ``None`` to let carepath's FAQ matcher decide. A plugin never writes the answer itself:
    answers come from the hospital's FAQ. The call is bounded by ``[conversations] classifier_timeout``; a
    slow, failing or unusable answer falls back to the matcher. Red-flag words are checked before any
    classifier and cannot be overridden.
    """
