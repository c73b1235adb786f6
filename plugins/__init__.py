"""carepath plugin system: hook specifications, plugin manager and connector contracts."""

from carepath.plugins.contracts import (
    CallbackRejected,
    CallbackRequest,
    Capabilities,
    Channel,
    Connector,
    ConnectorConfig,
    ErrorKind,
    HisSource,
    Message,
    SendResult,
    SurveyProvider,
    Veto,
    classify_http_status,
    secret_fields,
)
from carepath.plugins.hookspecs import hookimpl
from carepath.plugins.manager import PluginFailure, PluginManager, get_plugin_manager, load_plugins

__all__ = [
    "CallbackRejected",
    "CallbackRequest",
    "Capabilities",
    "Channel",
    "Connector",
    "ConnectorConfig",
    "ErrorKind",
    "HisSource",
    "Message",
    "PluginFailure",
    "PluginManager",
    "SendResult",
    "SurveyProvider",
    "Veto",
    "classify_http_status",
    "get_plugin_manager",
    "hookimpl",
    "load_plugins",
    "secret_fields",
]
