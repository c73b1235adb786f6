"""Options every SMS connector has (the provider's own credentials come on top)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from carepath.connectors.sms_common.templates import TemplateMapping
from carepath.plugins.contracts import ConnectorConfig

DEFAULT_OPT_OUT = "拒收请回复R"


class SmsConfig(ConnectorConfig):
    """Shared ``[connectors.<name>]`` keys of ``aliyun-sms`` and ``tencent-sms``."""

    endpoint: str = Field(pattern=r"^https?://[^\s/]+(/.*)?$", description="the provider's API address")
    sign_name: str = Field(min_length=2, max_length=20, description="the approved sign (签名), shown as 【sign】")
    templates: dict[str, TemplateMapping] = Field(default_factory=dict,
                                                  description="carepath template -> provider template")
    timeout: float = Field(5.0, gt=0, le=60, description="connect and read timeout in seconds")
    callback_token: SecretStr | None = Field(None, min_length=16, description="secret path token of "
                                                               "/hooks/<type>/<name>/<token>/... (16+ characters)")
    opt_out_text: str = Field(DEFAULT_OPT_OUT, description="text every marketing SMS must carry")
    rate_limit_backoff: float = Field(600, gt=0, description="seconds a number rests after a rate-limit code "
                                                             "(doubles with each further one)")
    account_backoff: float = Field(1800, gt=0, description="seconds messages are held after an account problem")
    lookup_grace: float = Field(0, ge=0, description="seconds during which 'not found' by lookup means "
                                                     "'not known yet' (providers that report late)")

