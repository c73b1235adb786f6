"""The built-in WeChat connector: Official Account and Mini Program messages, callbacks, an emulator."""

from carepath.plugins.hookspecs import hookimpl

from carepath.connectors.wechat.channel import WechatChannel
from carepath.connectors.wechat.config import TemplateMapping, WechatConfig

__all__ = ["TemplateMapping", "WechatChannel", "WechatConfig"]


@hookimpl
def carepath_connectors():
    """The ``wechat`` channel type."""
    return [WechatChannel]


@hookimpl
def carepath_web_routes():
    """WeChat's server-configuration check and event pushes: ``GET|POST /hooks/wechat/<name>``."""
    from carepath.plugins.web import callback_router

    return callback_router(WechatChannel.type_name)
