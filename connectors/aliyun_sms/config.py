"""``[connectors.<name>] type = "aliyun-sms"`` options."""

from __future__ import annotations

from pydantic import Field, SecretStr

from carepath.connectors.sms_common.config import SmsConfig


class AliyunSmsConfig(SmsConfig):
    """Alibaba Cloud credentials on top of the shared SMS options."""

    endpoint: str = Field("https://dysmsapi.aliyuncs.com", pattern=r"^https?://[^\s/]+(/.*)?$",
                          description="dysmsapi address (the emulator's in tests)")
    access_key_id: str = Field(min_length=1, description="AccessKey ID")
    access_key_secret: SecretStr = Field(min_length=8, description="AccessKey secret: {env = \"...\"}")
    region_id: str = Field("cn-hangzhou", description="RegionId parameter")
