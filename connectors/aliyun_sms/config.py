"""``[connectors.<name>] type = "aliyun-sms"`` options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from carepath.connectors.sms_common.config import SmsConfig


class AliyunSmsConfig(SmsConfig):
    """Alibaba Cloud credentials on top of the shared SMS options."""

    endpoint: str = Field("https://dysmsapi.aliyuncs.com", pattern=r"^https?://[^\s/]+(/.*)?$",
                          description="dysmsapi address (the emulator's in tests)")
    access_key_id: str = Field(min_length=1, description="AccessKey ID")
    access_key_secret: SecretStr = Field(min_length=8, description="AccessKey secret: {env = \"...\"}")
    region_id: str = Field("cn-hangzhou", description="RegionId parameter")
    signature_version: Literal["v3", "v1"] = Field(
        "v3", description="v3: ACS3-HMAC-SHA256, as Alibaba Cloud's current SDKs sign (default); v1: the older "
                          "RPC HMAC-SHA1 signature, for an endpoint or gateway that takes only that")
