"""``[connectors.<name>] type = "wecom"``: the configuration model and the communities."""

from __future__ import annotations

import re

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator

from carepath.plugins.contracts import ConnectorConfig

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,47}$")


class Community(ConnectorConfig):
    """A named patient community (社群): a WeCom customer group and how patients join it."""

    chat_id: str = Field(min_length=1, max_length=64, description="the WeCom customer group's chat id (wr...)")
    owner: str = Field(min_length=1, max_length=64, description="staff userid of the group owner (sends its posts)")
    title: str = Field("", max_length=64, description="what patients see it called (defaults to the name)")
    invite_url: HttpUrl | None = Field(None, description="a join link or QR code image a message may carry")


class WecomConfig(ConnectorConfig):
    """Options of a ``wecom`` channel; secrets (``secret``, ``token``, ``encoding_aes_key``) as ``{env = "..."}``."""

    corpid: str = Field(pattern=r"^w[wx][0-9A-Za-z]{8,32}$", description="the enterprise's CorpID (ww...)")
    secret: SecretStr = Field(min_length=8, description="the customer-contact (客户联系) secret")
    token: SecretStr = Field(min_length=3, max_length=32, description="callback Token")
    encoding_aes_key: SecretStr = Field(description="callback EncodingAESKey (43 characters)")
    api_base: HttpUrl = Field(HttpUrl("https://qyapi.weixin.qq.com"), description="WeCom API (an emulator in tests)")
    timeout: float = Field(5.0, gt=0, le=60, description="connect and read timeout in seconds")
    token_refresh_margin: int = Field(300, ge=0, le=3600,
                                      description="refresh the access token this many seconds before it expires")
    callback_max_age: int = Field(300, ge=30, le=86400, description="oldest callback timestamp accepted, seconds")
    callback_max_bytes: int = Field(65536, ge=1024, le=1048576, description="largest callback body read, bytes")
    confirm_within: int = Field(24 * 3600, ge=60, le=30 * 86400,
                                description="a message its staff member has not confirmed after this many seconds "
                                            "falls back like an undelivered one")
    binding_ttl: int = Field(30 * 86400, ge=60, le=365 * 86400,
                             description="life of the State token of a patient's add-contact QR code, seconds")
    welcome_text: str = Field("", max_length=4000,
                              description="welcome message sent when a patient adds their health manager "
                                          "(empty: none)")
    open_kfid: str | None = Field(None, max_length=64,
                                  description="the customer-service account (微信客服) answering patients")
    communities: dict[str, Community] = Field(default_factory=dict, description="community name -> customer group")
    posts: dict[str, str] = Field(default_factory=dict,
                                  description="carepath template -> community it is posted to (not to the patient)")
    invites: dict[str, str] = Field(default_factory=dict,
                                    description="carepath template -> community whose invite_url is appended to it")

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"[A-Za-z0-9+/]{43}", value.get_secret_value()):
            raise ValueError("EncodingAESKey is 43 characters of base64 (letters, digits, + and /)")
        return value

    @field_validator("communities")
    @classmethod
    def _names(cls, communities: dict[str, Community]) -> dict[str, Community]:
        for name in communities:
            if not _NAME.match(name):
                raise ValueError(f"communities.{name}: a name is lower-case letters, digits, - and _")
        return communities

    @model_validator(mode="after")
    def _posts_name_communities(self) -> "WecomConfig":
        for key, mapping in (("posts", self.posts), ("invites", self.invites)):
            unknown = sorted(f"{t} -> {c}" for t, c in mapping.items() if c not in self.communities)
            if unknown:
                raise ValueError(f"{key} name communities that are not configured: {', '.join(unknown)}")
        linkless = sorted(c for c in self.invites.values() if self.communities[c].invite_url is None)
        if linkless:
            raise ValueError(f"invites name communities without an invite_url: {', '.join(linkless)}")
        return self

    @property
    def base_url(self) -> str:
        return str(self.api_base).rstrip("/")
