"""The template map: each carepath template -> a template registered with the SMS provider.

Chinese SMS providers only send templates they approved, so each connector's
configuration names, per carepath template, the provider's template code,
optionally a sign name, and one expression per template parameter::

    [connectors.sms.templates.appointment_reminder]
    code = "SMS_123456789"
    params = { name = "{{ patient.surname }}", time = "{{ anchors.appointment | datetime }}" }

Parameters render in the journey templates' sandbox, against the same
context (``Message.context``). Their order is kept: providers with
positional parameters (Tencent ``{1}``, ``{2}``) take them in that order.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from pydantic import Field, field_validator

from carepath.definition.expressions import check_template, render
from carepath.plugins.contracts import ConnectorConfig


class TemplateMapping(ConnectorConfig):
    """One ``[connectors.<name>.templates.<carepath template>]`` table."""

    code: str = Field(min_length=1, description="the provider's template code or id")
    sign_name: str | None = Field(None, description="sign name for this template (default: the connector's)")
    params: dict[str, str] = Field(default_factory=dict,
                                   description="provider parameter -> carepath template expression, in order")

    @field_validator("params")
    @classmethod
    def _compiles(cls, params: dict[str, str]) -> dict[str, str]:
        for name, source in params.items():
            check_template(source, f"params.{name}")
        return params


class ParamError(ValueError):
    """A template parameter could not be rendered; ``param`` names it."""

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        super().__init__(f"template parameter {param!r}: {problem}")


def render_params(mapping: TemplateMapping, context: Mapping[str, Any]) -> dict[str, str]:
    """Each provider parameter rendered against ``context``, in the configured order."""
    out: dict[str, str] = {}
    values = dict(context)
    for name, source in mapping.params.items():
        try:
            out[name] = render(source, values)
        except Exception as exc:  # undefined names, filter errors: a configuration problem
            raise ParamError(name, f"{type(exc).__name__}: {exc}") from None
    return out


def unmapped(templates: Mapping[str, TemplateMapping], names: Iterable[str]) -> list[str]:
    """The carepath templates among ``names`` that have no provider template."""
    return sorted({n for n in names if n not in templates})
