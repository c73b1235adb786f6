"""Example carepath plugin: a signed HTTP webhook channel and a follow-up journey."""

from carepath_plugin_example.channel import SIGNATURE_HEADER, WebhookChannel, WebhookConfig, sign
from carepath_plugin_example.emulator import WebhookEmulator
from carepath_plugin_example.journey import followup_journey

__all__ = ["SIGNATURE_HEADER", "WebhookChannel", "WebhookConfig", "WebhookEmulator", "followup_journey", "sign"]
