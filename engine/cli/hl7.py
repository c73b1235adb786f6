"""``carepath hl7 send``: send HL7 v2 files to an MLLP listener and print each acknowledgement."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer
from rich.table import Table
from rich.text import Text

from carepath.cli.common import err_console, out_console

app = typer.Typer(help="HL7 v2 over MLLP: try a listener with message files.", no_args_is_help=True)


def split_messages(raw: bytes) -> list[bytes]:
    """Messages in a file: each starts at a line beginning ``MSH``; segments end in CR, LF or CRLF."""
    lines = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    messages: list[list[bytes]] = []
    for line in lines:
        if line.startswith(b"MSH"):
            messages.append([line])
        elif line.strip() and messages:
            messages[-1].append(line)
    return [b"\r".join(segments) + b"\r" for segments in messages]


def _fields(ack: str, segment: str) -> list[str]:
    found = next((s for s in ack.split("\r") if s.startswith(segment + "|")), "")
    return found.split("|") if found else []


@app.command("send")
def send(files: List[Path] = typer.Argument(..., help="files of HL7 v2 messages ('-' for standard input)"),
         host: str = typer.Option("127.0.0.1", help="MLLP listener address"),
         port: int = typer.Option(2575, help="MLLP listener port"),
         timeout: float = typer.Option(10.0, help="seconds to wait for each acknowledgement"),
         raw: bool = typer.Option(False, "--raw", help="send each file as it is, one frame per file: no split "
                                                       "into messages, no line-ending repair (to try a listener "
                                                       "with a broken message)")) -> None:
    """Send every message of FILES over one MLLP connection; exit 1 if any is not accepted (AA)."""
    from carepath.connectors.his.hl7_message import CHARSETS, raw_control_id
    from carepath.connectors.his.mllp import MllpClient

    batches = []
    for path in files:
        try:
            content = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        except OSError as exc:
            err_console().print(f"cannot read {path}: {exc.strerror}", style="red")
            raise typer.Exit(3) from None  # not found (docs/cli.md)
        messages = [content] if raw else split_messages(content)
        batches += [(str(path), n, message) for n, message in enumerate(messages, start=1)]
    if not batches:
        err_console().print("no HL7 message (no line starting with MSH) in the given files", style="red")
        raise typer.Exit(1)  # invalid input (docs/cli.md)
    table = Table("file", "#", "control id", "ack", "text", "error at", title=f"MLLP {host}:{port}")
    refused = 0
    try:
        with MllpClient(host, port, timeout=timeout) as client:
            for name, n, message in batches:
                answer = client.send(message)
                charset = _declared_charset(answer, CHARSETS)
                ack = answer.decode(charset, errors="replace")
                msa, er = _fields(ack, "MSA"), _fields(ack, "ERR")
                code = msa[1] if len(msa) > 1 else "?"
                refused += code != "AA"
                style = "green" if code == "AA" else "red"
                table.add_row(name, str(n), raw_control_id(message), Text(code, style=style),
                              msa[3] if len(msa) > 3 else "", er[2] if len(er) > 2 else "")
    except OSError as exc:
        err_console().print(f"MLLP {host}:{port}: {exc.strerror or exc}", style="red")
        raise typer.Exit(1) from None
    out_console().print(table)
    if refused:
        raise typer.Exit(1)


def _declared_charset(answer: bytes, charsets: dict[str, str]) -> str:
    header = answer.split(b"\r", 1)[0].decode("latin-1").split("|")
    declared = header[17].split("^")[0].strip() if len(header) > 17 else ""
    return charsets.get(declared.upper(), "utf-8") if declared else "utf-8"
