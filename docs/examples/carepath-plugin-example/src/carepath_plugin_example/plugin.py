"""The module the ``carepath`` entry point names: the hook implementations."""

from carepath.plugins import hookimpl
from carepath.plugins.web import callback_router

from carepath_plugin_example.channel import WebhookChannel
from carepath_plugin_example.journey import followup_journey


@hookimpl
def carepath_connectors():
    """The webhook channel type (``type = "webhook"`` in carepath.toml)."""
    return [WebhookChannel]


@hookimpl
def carepath_journeys():
    return [followup_journey]


@hookimpl
def carepath_templates():
    return dict(followup_journey.templates)


@hookimpl
def carepath_web_routes():
    """Signed receipts and replies: ``POST /hooks/webhook/<name>``."""
    return callback_router(WebhookChannel.type_name)
