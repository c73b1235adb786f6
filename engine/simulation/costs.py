"""What a simulation's messages would cost: SMS billed per part, other channels per message.

The SMS rule is the one Chinese providers (Aliyun, Tencent Cloud) bill Chinese text by: a message of
up to 70 characters is one part; a longer one is sent as a concatenated message whose parts carry 67
characters each (3 characters of every part go to the header that joins them), so it costs
``ceil(length / 67)`` parts. Chinese text is sent in UCS-2, where those are the limits, so the rule is
the same whatever the mix of Chinese and Latin characters; the count is of the message text as the
channel received it (a provider that adds its signature 【...】 adds its length too: give it in
``signature_chars``).

Default prices, in CNY: SMS 0.045 per part (a list price for Chinese domestic SMS), WeChat 0 (template
and subscription messages are free); any other channel 0 per message unless the prices file names it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SINGLE_PART = 70
CONCATENATED_PART = 67
DEFAULT_SMS_PRICE = 0.045


def sms_parts(text: str, signature_chars: int = 0) -> int:
    """Parts an SMS of ``text`` is billed as: 1 up to 70 characters, else one per 67."""
    length = len(text) + signature_chars
    if length <= SINGLE_PART:
        return 1
    return math.ceil(length / CONCATENATED_PART)


class ChannelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price: float = Field(ge=0, description="price of one part (per: part) or one message (per: message)")
    per: Literal["part", "message"] = "message"


class Prices(BaseModel):
    """Prices per channel; a channel not listed is billed by the default rule."""

    model_config = ConfigDict(extra="forbid")

    currency: str = "CNY"
    signature_chars: int = Field(0, ge=0, le=70, description="characters the SMS provider adds (the signature)")
    channels: dict[str, ChannelPrice | float] = Field(default_factory=dict)

    def for_channel(self, name: str) -> ChannelPrice:
        """The price of ``name``: as listed, else SMS-like names per part at the default, others free."""
        given = self.channels.get(name)
        default_per = "part" if "sms" in name.lower() else "message"
        if isinstance(given, ChannelPrice):
            return given
        if given is not None:
            return ChannelPrice(price=given, per=default_per)
        return ChannelPrice(price=DEFAULT_SMS_PRICE if default_per == "part" else 0.0, per=default_per)


class PricesError(ValueError):
    """A prices file that cannot be used; the message names the file and the key."""


def load_prices(path: Path | None) -> Prices:
    """The default prices, or those of a YAML/JSON file (``currency``, ``signature_chars``, ``channels``)."""
    if path is None:
        return Prices()
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise PricesError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PricesError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from None
    try:
        return Prices.model_validate(data or {})
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"] if p not in ("ChannelPrice", "float")) or "prices"
            problems.append(f"{path}: {where}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}")
        raise PricesError("; ".join(dict.fromkeys(problems))) from None


@dataclass
class ChannelCost:
    """Messages, billed units and cost of one channel."""

    channel: str
    per: str
    price: float
    messages: int = 0
    units: int = 0  # parts (per: part) or messages
    by_parts: dict[int, int] = field(default_factory=dict)  # parts -> messages of that many parts

    @property
    def cost(self) -> float:
        return round(self.units * self.price, 4)

    def as_dict(self) -> dict:
        return {"channel": self.channel, "billed_per": self.per, "price": self.price, "messages": self.messages,
                "units": self.units, "cost": self.cost,
                "messages_by_parts": {str(k): v for k, v in sorted(self.by_parts.items())}}


def cost_by_channel(messages: list[tuple[str, str]], prices: Prices) -> dict[str, ChannelCost]:
    """Cost per channel of ``(channel, text)`` messages, as the sandbox channels recorded them."""
    out: dict[str, ChannelCost] = {}
    for channel, text in messages:
        rule = prices.for_channel(channel)
        line = out.setdefault(channel, ChannelCost(channel, rule.per, rule.price))
        units = sms_parts(text, prices.signature_chars) if rule.per == "part" else 1
        line.messages += 1
        line.units += units
        line.by_parts[units] = line.by_parts.get(units, 0) + 1
    return dict(sorted(out.items()))
