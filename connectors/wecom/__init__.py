"""The built-in WeCom (企业微信) connector: customer-contact mass messages, communities, customer service."""

from carepath.plugins.hookspecs import hookimpl
from carepath.runtime.maintenance import register

from carepath.connectors.wecom.channel import WecomChannel
from carepath.connectors.wecom.config import Community, WecomConfig

__all__ = ["Community", "WecomChannel", "WecomConfig", "check_wecom_confirmations"]


def check_wecom_confirmations(engine) -> int:  # noqa: ANN001 - a maintenance job
    """Maintenance job: ask WeCom about every send still waiting for its staff member's confirmation."""
    return sum(channel.check_confirmations() for channel in getattr(engine, "channels", {}).values()
               if isinstance(channel, WecomChannel))


register("wecom_confirmations", check_wecom_confirmations)


@hookimpl
def carepath_connectors():
    """The ``wecom`` channel type."""
    return [WecomChannel]


@hookimpl
def carepath_web_routes():
    """WeCom's URL check and encrypted callbacks: ``GET|POST /hooks/wecom/<name>``."""
    from carepath.plugins.web import callback_router

    return callback_router(WecomChannel.type_name)
