"""The ``console`` channel: prints each message with its address masked."""

from __future__ import annotations

import threading
from typing import ClassVar, Literal

from rich.console import Console
from rich.text import Text

from carepath.masking import mask_address, mask_text
from carepath.plugins.contracts import Channel, ConnectorConfig, Message, SendResult
from carepath.plugins.hookspecs import hookimpl


class ConsoleConfig(ConnectorConfig):
    address: Literal["phone", "openid", "none"] = "none"


class ConsoleChannel(Channel):
    """Development channel; idempotent per key within one process."""

    type_name: ClassVar[str] = "console"
    Config = ConsoleConfig
    reads_context: ClassVar[bool] = False  # sends the rendered title and body only

    def __init__(self, name: str, config: ConsoleConfig | None = None) -> None:
        super().__init__(name, config)
        self.address_kind = self.config.address  # type: ignore[misc]
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()
        # a patient's message is printed as written: no rich markup ([b]) or emoji codes (:100:)
        self._console = Console(stderr=False, highlight=False, markup=False, emoji=False)

    def send(self, message: Message) -> SendResult:
        with self._lock:
            if message.idempotency_key in self._seen:
                return SendResult.sent(self._seen[message.idempotency_key])
            provider_id = f"console-{len(self._seen) + 1}"
            self._seen[message.idempotency_key] = provider_id
        to = mask_address(self.address_kind, message.address) or f"patient {message.patient_id}"
        self._console.print(Text.assemble((self.name, "bold"), f" → {to}: {mask_text(message.title)} "
                                                               f"{mask_text(message.body)}"))
        return SendResult.sent(provider_id)


@hookimpl
def carepath_connectors():
    return [ConsoleChannel]
