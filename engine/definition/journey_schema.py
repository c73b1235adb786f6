"""A JSON Schema of journey YAML files, generated from the pydantic model, for editors.

The model's own schema (``Journey.model_json_schema()``) describes the model's shape; journey files
use shorthand (:mod:`carepath.definition.journey_files`): a step names its trigger and action by key
(``on:``, ``before:``, ``send:``), ``when`` stands for ``condition``, and some keys take a scalar
(``on: visit.checked_in``, ``missed: skip``). This module turns the first into the second: trigger
and action kinds come from the model's unions (a kind added there appears here), durations and
times of day get the patterns authors write, and every property gets a description (the field's own
``description`` in the model, else :data:`FIELD_DOCS`, else the model's docstring) so that an editor
running yaml-language-server completes, explains and checks journey files::

    # yaml-language-server: $schema=journey.schema.json
"""

from __future__ import annotations

import copy
import json
import re
import typing
from datetime import time, timedelta
from typing import Any

from pydantic import BaseModel

from carepath.definition.durations import CalendarDuration, format_duration, parse_span
from carepath.definition.journey_files import SHORTHAND_FIELD, STEP_KEYS
from carepath.definition.model import Journey, Step, Threshold

__all__ = ["journey_schema", "schema_text", "SCHEMA_FILE", "modeline", "FIELD_DOCS"]

#: the file name the schema is written to next to journey files (and the modeline points at)
SCHEMA_FILE = "journey.schema.json"
DRAFT = "http://json-schema.org/draft-07/schema#"  # the draft every yaml-language-server version reads
DURATION = {"anyOf": [{"type": "string", "pattern": r"^\s*[+-]?\s*(P[0-9A-Za-z.]+|([0-9]+(\.[0-9]+)?\s*"
                                                      r"(mo|y|w|d|h|m|s)\s*)+)$"},
                      {"type": "integer"}],
            "examples": ["30m", "2h", "1d", "1w", "3mo"]}
TIME_OF_DAY = {"type": "string", "pattern": r"^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
               "examples": ["09:00", "18:30"]}
CHOSEN_TIME = {"type": "string", "pattern": r"^patient\.preferences\.[a-z][a-z0-9_]*$",
               "examples": ["patient.preferences.medication_time"]}
THRESHOLD_TEXT = {"type": "string", "pattern": r"^\s*[a-z_0-9]+\s*(>=|<=|>|<|≥|≤)\s*-?\d+(\.\d+)?\s*\S+\s*$",
                  "examples": ["systolic_bp >= 140 mmHg", "glucose < 3.9 mmol/L"]}

#: descriptions of model fields that carry none in the model, by ``Model.field``
FIELD_DOCS: dict[str, str] = {
    "Journey.name": "Lowercase id of the journey (letters, digits, dashes); also the Prefect flow name.",
    "Journey.title": "A human title, shown in maps and reports.",
    "Journey.description": "What the journey is for, in a sentence.",
    "Journey.enroll": "Which events start an enrollment: {events: [...], condition: \"...\"}.",
    "Journey.exit": "Which events end an enrollment; everything pending is cancelled.",
    "Journey.reentry": "When an enrolling event starts a new enrollment: never, after_exit, or per_key "
                       "(one enrollment per value of `key`).",
    "Journey.key": "The event payload field that identifies the episode (e.g. appointment_id).",
    "Journey.anchors": "Named clinical times that steps count from: {set_by: [events], field: payload_key}.",
    "Journey.steps": "The steps: each has an id, a stage, exactly one trigger and exactly one action.",
    "Journey.templates": "Message templates by name: {title, body} or just the body (Jinja2 text).",
    "Journey.team": "The staff team that calls the patient when no channel delivered (default nursing).",
    "Journey.horizon": "How far ahead open-ended steps are planned (1 to 90 days).",
    "Journey.pause_on": "Events that pause the programme's planned steps (an admission).",
    "Journey.resume_on": "Events that resume a paused programme (the discharge).",
    "Journey.origin": "The stock journey this copy was made from (written by `carepath journeys new`).",
    "Journey.adapt": "What a hospital should adapt, by topic; shown on the journey's page (What to adapt), "
                     "not part of its version.",
    "Adapt.timings": "Which times and offsets to adapt (the hospital's hours, follow-up days).",
    "Adapt.teams": "Which staff teams receive the tasks, and how to name them in carepath.toml [teams].",
    "Adapt.slas": "The deadlines of the staff tasks.",
    "Adapt.wording": "What to say in the hospital's own voice (templates).",
    "Adapt.segments": "Which patients enter, and which segments or codes choose them.",
    "Adapt.conditions": "The conditions (when) that choose between steps.",
    "Adapt.channels": "The channels (via) and their order.",
    "Adapt.prices": "What the messages cost (carepath simulate --prices).",
    "Origin.journey": "The stock journey's name.",
    "Origin.version": "The stock journey's version when it was copied.",
    "EnrollRule.events": "Event types that enroll the patient.",
    "EnrollRule.condition": "An expression that must hold for the event to enroll (e.g. patient.has('E11')).",
    "ExitRule.events": "Event types that end the enrollment.",
    "ExitRule.condition": "An expression that must hold for the event to end the enrollment.",
    "AnchorRule.set_by": "Event types that set or move the anchor.",
    "AnchorRule.field": "The payload field with the anchor's time; without it the event's occurred_at.",
    "AnchorRule.cancelled_by": "Event types that cancel the anchor (and the steps counting from it).",
    "Template.title": "The message title (WeChat template title, card heading).",
    "Template.body": "The message text: Jinja2, rendered in a sandbox; unknown fields are errors.",
    "Step.id": "The step's id, unique in the journey (lowercase, digits, - and _).",
    "Step.stage": "pre_visit, in_visit or post_visit.",
    "Step.condition": "An expression that must hold when the step runs (same as `when`).",
    "Step.category": "clinical, transactional, marketing or urgent: decides quiet hours, caps and consent.",
    "Step.missed": "A touchpoint whose time had passed when planned: send (within grace) or skip.",
    "Step.over_cap": "Over the frequency cap: defer to the next allowed time, or drop.",
    "Step.resend_on_move": "When its anchor moves after it was sent, send it again at the new time.",
    "Step.confirm_within": "Not confirmed delivered within this window: fall back to the next channel.",
    "Step.description": "What the step is for, in a sentence.",
    "Step.workdays_only": "Only on official working days (recurring steps leave the other days out).",
    "Journey.experiment": "An experiment over every message step without its own: one arm per patient for the whole "
                          "journey (variants with template replacements and channels, a holdout share).",
    "Step.experiment": "Variants of the message with weights, and a holdout share that receives nothing "
                       "(marketing and non-clinical education steps only).",
    "OnEvent.event": "The event type that runs the step.",
    "OnEvent.delay": "Run this long after the event.",
    "OnEvent.once_per": "The payload field whose value the step runs once per (default: the journey's key).",
    "AnchorOffset.anchor": "The anchor to count from (`enrolled` always exists).",
    "AnchorOffset.offset": "How long before or after the anchor.",
    "AnchorOffset.at": "A patient-local time of day, HH:MM.",
    "Every.interval": "The rhythm: every 1d, 1w, 1mo ... (or give an rrule).",
    "Every.anchor": "The anchor the rhythm starts from (default: the enrollment).",
    "Every.start": "The first occurrence this long after the anchor.",
    "Every.at": "A patient-local time of day, HH:MM, or patient.preferences.NAME (the time the patient chose).",
    "Every.count": "How many times; without count or until it runs until the enrollment exits.",
    "Every.until": "Stop this long after the anchor.",
    "Every.rrule": "An RFC 5545 rule, e.g. FREQ=MONTHLY;BYDAY=1MO (the first Monday of each month).",
    "AfterStep.step": "The step this one follows.",
    "AfterStep.delay": "How long after that step reached its outcome.",
    "AfterStep.outcome": "sent or failed.",
    "AfterStep.unless": "replied: not when the patient replied meanwhile.",
    "Idle.days": "Days without any interaction by the patient.",
    "Calendar.moment": "birthday or a festival (中秋, 重阳, world-diabetes-day ...).",
    "Calendar.date": "A fixed Gregorian day, MM-DD.",
    "Calendar.at": "A patient-local time of day, HH:MM, or patient.preferences.NAME.",
    "Send.template": "The template to render (the journey's own or a plugin's).",
    "Send.via": "Channels in order of preference: the first usable one is used.",
    "Send.to": "Who receives it: patient, guardian, family or patient+family (unset: the patient, or a minor's guardian).",
    "Survey.to": "Who receives it: patient, guardian, family or patient+family (unset: the patient, or a minor's guardian).",
    "Checkin.to": "Who receives it: patient, guardian, family or patient+family (unset: the patient, or a minor's guardian).",
    "Checkin.template": "The template of the check-in prompt (it sees checkin.link and checkin.name).",
    "Checkin.via": "Channels for the prompt, in order of preference: the first usable one is used.",
    "Checkin.checkin": "The check-in's id (lowercase): streaks and completion are counted per id.",
    "Checkin.measure": "What a numeric answer measures (e.g. glucose, blood_pressure); none: a keyword check-in.",
    "Checkin.keywords": "Whole replies that count as checked in (default 打卡).",
    "Checkin.target": "The measure's clinical target, thresholds that all hold for a value on target (e.g. "
                      "\"glucose <= 7.0 mmol/L\"): report outcomes counts patients whose latest check-in is on it.",
    "Reading.any": "Thresholds such as \"systolic_bp >= 140 mmHg\": a reading counts when any of them holds.",
    "Reading.count": "How many counting readings within the window run the step (1: the first one).",
    "Reading.within": "The window the readings must fall in (e.g. 7d).",
    "Threshold.measure": "A measure of carepath.definition.measures (glucose, systolic_bp, diastolic_bp, ...).",
    "Threshold.op": "The comparison: >=, >, <= or <.",
    "Threshold.value": "The threshold value, in unit.",
    "Threshold.unit": "The unit of value (required, e.g. mmHg, mmol/L).",
    "Survey.survey": "The questionnaire's name.",
    "Survey.template": "The invitation's template; it sees survey.link and survey.name.",
    "Survey.provider": "builtin (carepath's pages) or a configured survey connector.",
    "Survey.detractor": "complaint_case: a detractor answer (NPS 0-6) to this invitation opens a complaint case "
                        "(deadlines and team from [complaints]).",
    "Survey.via": "Channels in order of preference: the first usable one is used.",
    "Task.task": "The kind of work (call_patient, complaint, clinical_review ...).",
    "Task.team": "The team that gets the task.",
    "Task.sla": "How long the team has to handle it.",
    "Task.detail": "What the staff member should do, in a sentence.",
    "Task.priority": "low, normal, high or urgent.",
    "Tag.add": "Tags to add to the patient.",
    "Tag.remove": "Tags to remove from the patient.",
    "Missed.policy": "send (within grace) or skip.",
    "Missed.grace": "How late a missed touchpoint may still go out.",
}


def _doc(text: str | None) -> str | None:
    """A docstring as an editor shows it: reST roles and double backquotes made plain."""
    if not text:
        return None
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("``", "`")
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text.strip())


def _contains(annotation: Any, kind: type) -> bool:
    if annotation is kind:
        return True
    return any(_contains(arg, kind) for arg in typing.get_args(annotation))


def _union_members(annotation: Any) -> list[type[BaseModel]]:
    """The models of a (possibly Annotated) discriminated union."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _union_members(args[0])
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _kinds(model: type[BaseModel]) -> list[str]:
    """The ``kind`` values a trigger or action model takes (``before`` and ``after`` share one model)."""
    return [str(v) for v in typing.get_args(model.model_fields["kind"].annotation)]


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model reachable from ``root`` by its schema title (the class name)."""
    found: dict[str, type[BaseModel]] = {}
    todo = [root]
    while todo:
        model = todo.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = model
        for info in model.model_fields.values():
            stack = [info.annotation]
            while stack:
                item = stack.pop()
                if isinstance(item, type) and issubclass(item, BaseModel):
                    todo.append(item)
                stack += typing.get_args(item)
    return found


def _value_schema(info: Any, schema: dict) -> dict:
    """A field's schema with durations and times of day as authors write them."""
    annotation = info.annotation
    nullable = _contains(annotation, type(None))
    if _contains(annotation, timedelta) or _contains(annotation, CalendarDuration):
        out = copy.deepcopy(DURATION)
    elif _contains(annotation, time):
        out = {"anyOf": [TIME_OF_DAY, CHOSEN_TIME]} if _contains(annotation, str) else dict(TIME_OF_DAY)
    elif _contains(annotation, Threshold) and "items" in schema:  # written as text: 'glucose < 3.9 mmol/L'
        return {**schema, "items": {"anyOf": [THRESHOLD_TEXT, schema["items"]]}}
    else:
        return schema
    if nullable:
        out = {"anyOf": [*(out.get("anyOf") or [out]), {"type": "null"}]}
    return out


def _authored(default: str) -> str:
    """A default as authors write it: ``PT12H`` -> ``12h``, ``09:00:00`` -> ``09:00``."""
    if re.fullmatch(r"\d\d:\d\d:00", default):
        return default[:5]
    try:
        return format_duration(parse_span(default))
    except ValueError:
        return default


def _fix_model(name: str, model: type[BaseModel], schema: dict) -> dict:
    """A model's schema with author-shaped values, descriptions on every field and no ``kind`` field."""
    schema = copy.deepcopy(schema)
    properties = schema.get("properties", {})
    for field_name, info in model.model_fields.items():
        if field_name not in properties:
            continue
        if field_name == "kind":
            del properties[field_name]
            continue
        prop = _value_schema(info, properties[field_name])
        for key in ("title", "default"):
            if key in properties[field_name] and key not in prop:
                prop[key] = properties[field_name][key]
        if prop is not properties[field_name] and isinstance(prop.get("default"), str):
            prop["default"] = _authored(prop["default"])
        description = info.description or FIELD_DOCS.get(f"{name}.{field_name}")
        if description:
            prop["description"] = description
        properties[field_name] = prop
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r != "kind"] or None
        if schema["required"] is None:
            del schema["required"]
    if schema.get("description"):
        schema["description"] = _doc(schema["description"])
    else:
        schema.pop("description", None)
    return schema


def _with_shorthand(key: str, ref: str, defs: dict) -> dict:
    """The property for a trigger or action key: the model, or the scalar its shorthand fills."""
    model_def = defs[ref.rsplit("/", 1)[-1]]
    field = SHORTHAND_FIELD.get(key)
    options: list[dict] = [{"$ref": ref}]
    if field and field in model_def.get("properties", {}):
        scalar = {k: v for k, v in model_def["properties"][field].items() if k not in ("default", "title")}
        if "anyOf" in scalar:  # a shorthand value is never null
            kept = [option for option in scalar.pop("anyOf") if option.get("type") != "null"]
            scalar = {**scalar, **kept[0]} if len(kept) == 1 else {**scalar, "anyOf": kept}
        if scalar.get("type") == "array":  # tag: vip, or tag: [vip, new]
            options += [scalar["items"], scalar]
        else:
            options.append(scalar)
    prop: dict[str, Any] = {"anyOf": options} if len(options) > 1 else {"$ref": ref}
    description = model_def.get("description")
    if description:
        prop["description"] = description
    return prop


def _step_schema(defs: dict) -> dict:
    """The step as files write it: trigger and action by key, ``when``, shorthand scalars."""
    model_step = defs["Step"]
    props: dict[str, Any] = {}
    trigger_keys: list[str] = []
    action_keys: list[str] = []
    for union_field, keys in (("trigger", trigger_keys), ("action", action_keys)):
        for member in _union_members(Step.model_fields[union_field].annotation):
            for kind in _kinds(member):
                keys.append(kind)
                props[kind] = _with_shorthand(kind, f"#/$defs/{member.__name__}", defs)
    for name, prop in model_step["properties"].items():
        if name in ("trigger", "action"):
            continue
        props[name] = prop
        if name == "condition":
            props["when"] = {**prop, "title": "When", "description": "An expression that must hold when the step runs, e.g. "
                                                    "patient.age >= 65 or event.nps_category == 'detractor'."}
    missed = props.get("missed")
    if missed is not None:
        props["missed"] = {"anyOf": [{"$ref": "#/$defs/Missed"}, defs["Missed"]["properties"]["policy"]],
                           "description": missed.get("description", "")}
    ordered = {key: props[key] for key in STEP_KEYS if key in props}
    ordered.update({key: value for key, value in props.items() if key not in ordered})
    return {
        "type": "object", "title": "Step", "additionalProperties": False,
        "description": "A step: an id, a stage, exactly one trigger (" + ", ".join(trigger_keys) + ") and exactly "
                       "one action (" + ", ".join(action_keys) + ").",
        "properties": ordered,
        "required": ["id", "stage"],
        "allOf": [{"oneOf": [{"required": [k]} for k in trigger_keys]},
                  {"oneOf": [{"required": [k]} for k in action_keys]},
                  {"not": {"required": ["when", "condition"]}}],
    }


def journey_schema() -> dict:
    """The JSON Schema (draft 7) of a journey YAML file."""
    base = Journey.model_json_schema(ref_template="#/$defs/{model}")
    models = _models(Journey)
    defs = {name: _fix_model(name, models[name], schema) if name in models else schema
            for name, schema in base.pop("$defs", {}).items()}
    top = _fix_model("Journey", Journey, base)
    defs["FileStep"] = _step_schema(defs)
    defs.pop("Step", None)
    template = {k: v for k, v in defs["Template"].items()}
    template["properties"] = {k: v for k, v in template["properties"].items() if k != "name"}
    template["required"] = [r for r in template.get("required", []) if r != "name"]
    defs["Template"] = template
    top["properties"]["steps"] = {**top["properties"]["steps"], "items": {"$ref": "#/$defs/FileStep"}}
    top["properties"]["templates"] = {
        "type": "object", "description": top["properties"]["templates"].get("description", ""),
        "additionalProperties": {"anyOf": [{"type": "string", "description": "The template's body (Jinja2)."},
                                           {"$ref": "#/$defs/Template"}]}}
    top["properties"].pop("version", None)
    return _lone_refs({"$schema": DRAFT, "$id": "urn:carepath:journey", "title": "carepath journey",
            "description": _doc(Journey.__doc__) or "A carepath journey: enrollment, anchors, templates and steps "
                                                     "by stage (docs/journeys.md).",
            **{k: v for k, v in top.items() if k not in ("title", "description")}, "$defs": defs})


def _lone_refs(node: Any) -> Any:
    """Draft 7 ignores the keywords beside a ``$ref``: such a ``$ref`` moves into an ``allOf`` so its
    description and default still show in editors."""
    if isinstance(node, list):
        return [_lone_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _lone_refs(value) for key, value in node.items()}
    if "$ref" in node and len(node) > 1:
        node = {"allOf": [{"$ref": node.pop("$ref")}], **node}
    return node


def schema_text() -> str:
    """The schema as the committed ``journey.schema.json`` holds it (sorted keys, two-space indent)."""
    return json.dumps(journey_schema(), indent=2, ensure_ascii=False) + "\n"


def modeline(schema: str = SCHEMA_FILE) -> str:
    """The comment that points yaml-language-server at the schema (a path relative to the file, or a URL)."""
    return f"# yaml-language-server: $schema={schema}"
