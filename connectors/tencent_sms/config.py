"""``[connectors.<name>] type = "tencent-sms"`` options."""

from __future__ import annotations

from pydantic import Field, SecretStr

from carepath.connectors.sms_common.config import SmsConfig


class TencentSmsConfig(SmsConfig):
    """Tencent Cloud credentials and SMS application on top of the shared SMS options."""

    endpoint: str = Field("https://sms.tencentcloudapi.com", pattern=r"^https?://[^\s/]+(/.*)?$",
                          description="SMS API address (the emulator's in tests)")
    secret_id: str = Field(min_length=1, description="SecretId")
    secret_key: SecretStr = Field(min_length=8, description="SecretKey: {env = \"...\"}")
    sms_sdk_app_id: str = Field(pattern=r"^\d+$", description="SmsSdkAppId of the SMS application")
    region: str = Field("ap-guangzhou", description="X-TC-Region")
    param_max_length: int | None = Field(12, gt=0, description="characters per template parameter "
                                                               "(12 unless the account is enterprise-verified)")
    lookup_grace: float = Field(600, ge=0, description="seconds before a message absent from the send-status "
                                                       "pull counts as never sent (reports arrive late)")
