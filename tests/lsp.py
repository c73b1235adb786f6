"""yaml-language-server (npm, tests/js/fetch.sh) driven over the Language Server Protocol, as an editor does."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

SERVER = Path(__file__).resolve().parent / "js" / "node_modules" / ".bin" / "yaml-language-server"
#: how long one answer may take on a loaded machine (a bound, not a measured speed)
ANSWER_WITHIN = 60


class YamlLanguageServer:
    """One yaml-language-server over stdio: open documents, read their diagnostics, ask completion and hover."""

    def __init__(self, command: list[str], root: Path):
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.inbox: queue.Queue[dict] = queue.Queue()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.request("initialize", {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": {
            "workspace": {"configuration": True}, "textDocument": {"hover": {"contentFormat": ["plaintext"]}}}})
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": {"yaml": {
            "validate": True, "completion": True, "hover": True, "schemaStore": {"enable": False}}}})

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                if not line.strip():
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.inbox.put(json.loads(stream.read(length or 0)))

    def _send(self, message: dict) -> None:
        data = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        self.process.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self._send({"method": method, "params": params})

    def _wait(self, wanted: Callable[[dict], bool]) -> dict:
        while True:
            try:
                message = self.inbox.get(timeout=ANSWER_WITHIN)
            except queue.Empty:
                raise AssertionError(f"yaml-language-server did not answer within {ANSWER_WITHIN} s") from None
            if "method" in message and "id" in message:  # a request from the server: settings, capabilities
                items = message.get("params", {}).get("items", [])
                result = [{"validate": True, "completion": True, "hover": True}] * len(items) \
                    if message["method"] == "workspace/configuration" else None
                self._send({"id": message["id"], "result": result})
            elif wanted(message):
                return message

    def request(self, method: str, params: dict) -> Any:
        self._next += 1
        ident = self._next
        self._send({"id": ident, "method": method, "params": params})
        return self._wait(lambda m: m.get("id") == ident and "method" not in m).get("result")

    def open(self, path: Path) -> list[dict]:
        """Open ``path`` and return the diagnostics the server publishes for it."""
        uri = path.as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1,
                                                              "text": path.read_text(encoding="utf-8")}})
        message = self._wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                             and m["params"]["uri"] == uri)
        return message["params"]["diagnostics"]

    def completion(self, path: Path, line: int, character: int) -> list[str]:
        result = self.request("textDocument/completion", {"textDocument": {"uri": path.as_uri()},
                                                          "position": {"line": line, "character": character}})
        items = result.get("items", []) if isinstance(result, dict) else result or []
        return [item["label"] for item in items]

    def hover(self, path: Path, line: int, character: int) -> str:
        result = self.request("textDocument/hover", {"textDocument": {"uri": path.as_uri()},
                                                     "position": {"line": line, "character": character}})
        contents = (result or {}).get("contents", "")
        return contents.get("value", "") if isinstance(contents, dict) else str(contents)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def yaml_language_server(root: Path) -> Iterator[YamlLanguageServer]:
    """A running yaml-language-server; the test is skipped, with the reason, where it or node is missing."""
    command = os.environ.get("CAREPATH_YAML_LANGUAGE_SERVER") or (str(SERVER) if SERVER.exists() else None)
    if command is None or shutil.which("node") is None:
        pytest.skip("yaml-language-server not installed: run tests/js/fetch.sh (npm) or set "
                    "CAREPATH_YAML_LANGUAGE_SERVER")
    server = YamlLanguageServer([command, "--stdio"], root)
    try:
        yield server
    finally:
        server.close()
