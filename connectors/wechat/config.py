"""``[connectors.<name>] type = "wechat"``: the configuration model and the template map."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator

from carepath.definition.expressions import check_template
from carepath.plugins.contracts import ConnectorConfig

_FIELD = re.compile(r"^[a-z_]+[0-9]*$")


class TemplateMapping(ConnectorConfig):
    """How one carepath template goes out on WeChat.

    ``data`` maps each WeChat field (``thing1``, ``time2``, ...) to a Jinja2
    template rendered in the journey template's context (``patient``,
    ``event``, ``anchors``, ``journey``, ``now``).
    """

    template_id: str = Field(min_length=1, max_length=128, description="the template id registered with WeChat")
    url: HttpUrl | None = Field(None, description="web page opened from an Official Account template message")
    page: str | None = Field(None, max_length=256, description="Mini Program page (path and query)")
    data: dict[str, str] = Field(min_length=1, description="WeChat field -> Jinja2 template")

    @field_validator("data")
    @classmethod
    def _fields(cls, data: dict[str, str]) -> dict[str, str]:
        for key, source in data.items():
            if not _FIELD.match(key):
                raise ValueError(f"data.{key}: WeChat field names look like thing1, time2, phrase3")
            check_template(source, f"data.{key}")
        return data


class WechatConfig(ConnectorConfig):
    """Options of a ``wechat`` channel; secrets (``secret``, ``token``, ``encoding_aes_key``) as ``{env = "..."}``."""

    kind: Literal["template", "subscribe", "miniprogram"] = Field(
        "template", description="template: Official Account template messages; subscribe: Official Account "
                                "subscription messages (bizsend); miniprogram: Mini Program subscribe messages")
    appid: str = Field(pattern=r"^wx[0-9A-Za-z]{8,32}$", description="AppID of the Official Account / Mini Program")
    secret: SecretStr = Field(min_length=8, description="AppSecret")
    token: SecretStr = Field(min_length=3, max_length=32, description="callback Token (server configuration)")
    encoding_aes_key: SecretStr | None = Field(
        None, description="EncodingAESKey (43 characters): callbacks must then come in safe (AES) mode")
    api_base: HttpUrl = Field(HttpUrl("https://api.weixin.qq.com"), description="WeChat API (an emulator in tests)")
    timeout: float = Field(5.0, gt=0, le=60, description="connect and read timeout in seconds")
    miniprogram_appid: str | None = Field(None, pattern=r"^wx[0-9A-Za-z]{8,32}$",
                                          description="Mini Program that template/subscription pages open in")
    miniprogram_state: Literal["developer", "trial", "formal"] = "formal"
    lang: Literal["zh_CN", "en_US", "zh_HK", "zh_TW"] = "zh_CN"
    token_refresh_margin: int = Field(300, ge=0, le=3600,
                                      description="refresh the access token this many seconds before it expires")
    callback_max_age: int = Field(300, ge=30, le=86400, description="oldest callback timestamp accepted, seconds")
    binding_ttl: int = Field(7 * 86400, ge=60, le=30 * 86400, description="life of a patient binding token, seconds")
    templates: dict[str, TemplateMapping] = Field(default_factory=dict, description="carepath template -> WeChat")

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9+/]{43}", value.get_secret_value()):
            raise ValueError("EncodingAESKey is 43 characters of base64 (letters, digits, + and /)")
        return value

    @model_validator(mode="after")
    def _pages_need_a_miniprogram(self) -> "WechatConfig":
        if self.kind != "miniprogram" and not self.miniprogram_appid:
            paged = sorted(name for name, m in self.templates.items() if m.page)
            if paged:
                raise ValueError(f"templates {', '.join(paged)} open a Mini Program page: set miniprogram_appid")
        if self.kind == "miniprogram":
            linked = sorted(name for name, m in self.templates.items() if m.url)
            if linked:
                raise ValueError(f"templates {', '.join(linked)}: Mini Program messages open a page, not a url")
        return self

    @property
    def base_url(self) -> str:
        return str(self.api_base).rstrip("/")
