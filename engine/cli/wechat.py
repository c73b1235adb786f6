"""``carepath wechat bind``: a one-time binding QR code that links a patient's WeChat account to the record."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, ExitCode, fail, open_cli_engine, out_console, print_json
from carepath.definition.durations import format_duration

app = typer.Typer(help="WeChat: link patients' WeChat accounts to their records.", no_args_is_help=True,
                  add_completion=False)


@app.command("bind")
def bind(mrn: str = typer.Argument(..., help="the patient's MRN (medical record number)"),
         channel: str = typer.Option("wechat", "--channel", help="the WeChat connector's name in carepath.toml"),
         token_only: bool = typer.Option(False, "--token-only", help="only make the signed token, without calling "
                                         "WeChat (for a QR code or H5 link the hospital makes itself)"),
         as_json: bool = typer.Option(False, "--json", help="print JSON"),
         config: Optional[Path] = CONFIG_OPTION,
         db: Optional[str] = DB_OPTION
         ) -> None:
    """Make a binding QR code for the patient MRN names (print it on the appointment slip).

    Whoever scans it follows the Official Account and is linked to that patient; it works once and
    expires after the connector's binding_ttl (default 7 days).
    """
    from carepath.connectors.wechat.channel import ApiError, WechatChannel
    from carepath.runtime.patients import find_patient_id

    engine = open_cli_engine(db, config, runs_journeys=False)
    try:
        wechat = engine.channels.get(channel)
        if not isinstance(wechat, WechatChannel):
            names = sorted(n for n, c in engine.channels.items() if isinstance(c, WechatChannel))
            fail(f"no WeChat connector named '{channel}' in the configuration"
                 + (f" (WeChat connectors: {', '.join(names)})" if names else ""), ExitCode.NOT_FOUND)
        with engine.db.connect() as conn:
            patient_id = find_patient_id(conn, engine.cipher, mrn)
        if patient_id is None:
            fail(f"no patient with MRN {mrn}", ExitCode.NOT_FOUND)
        if token_only:
            shown = {"patient_id": patient_id, "token": wechat.binding_token(patient_id),
                     "expires_in": wechat.config.binding_ttl}
        else:
            try:
                qr = wechat.binding_qrcode(patient_id)
            except (ApiError, ValueError) as exc:
                fail(f"{channel}: {exc}")
            shown = {"patient_id": patient_id, "image": qr.image, "url": qr.url, "token": qr.token,
                     "expires_in": qr.expires_in}
    finally:
        engine.close()
    if as_json:
        print_json(shown)
        return
    console = out_console()
    for key, value in shown.items():
        if value not in ("", None):
            console.print(f"{key.replace('_', ' ')}: {value}", markup=False, soft_wrap=True)
    console.print(f"It binds once and expires in {format_duration(timedelta(seconds=shown['expires_in']))}.",
                  style="dim")
