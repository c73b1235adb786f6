"""The built-in SMS plugin: the ``aliyun-sms`` and ``tencent-sms`` channels and their inbound hooks.

Receipts and replies arrive at ``POST /hooks/<type>/<name>/<callback_token>/receipts|replies``.
"""

from __future__ import annotations

from carepath.connectors.aliyun_sms.channel import AliyunSmsChannel
from carepath.connectors.tencent_sms.channel import TencentSmsChannel
from carepath.plugins.hookspecs import hookimpl

SMS_CHANNELS = (AliyunSmsChannel, TencentSmsChannel)


@hookimpl
def carepath_connectors():
    return list(SMS_CHANNELS)


@hookimpl
def carepath_web_routes():
    """Delivery receipts and replies of each SMS provider."""
    from carepath.plugins.web import callback_router

    return [callback_router(cls.type_name) for cls in SMS_CHANNELS]
