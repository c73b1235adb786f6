"""``carepath keys``: the key ring, what each key protects, rotating to a new key and retiring an old one."""

from __future__ import annotations

import getpass
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import DB_OPTION, ExitCode, err_console, fail, open_cli_store, out_console, print_json

app = typer.Typer(help="Encryption keys: status, rotation, retirement (docs/security.md).", no_args_is_help=True,
                  add_completion=False)


def cli_actor() -> str:
    """Who runs the command, as the audit log names them."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name (a container): still audited
        return "cli"


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
           db: Optional[str] = DB_OPTION) -> None:
    """How many values each key id still protects, per encrypted column; the key ring; a running rotation."""
    from carepath.store.crypto_rotation import key_status
    from carepath.store.keyring import ring_summary

    store = open_cli_store(db, read_only=True)
    try:
        st = key_status(store.db)
        ring = ring_summary(store.cipher)
    finally:
        store.db.dispose()
    if as_json:
        print_json({"active": st.active or store.cipher.current, "ring": ring, "retired": sorted(st.retired),
                    "columns": st.columns, "hashes": st.hashes, "per_key": st.per_key(), "running": st.running})
        return
    kids = sorted({k for counts in st.columns.values() for k in counts} | set(store.cipher.key_ids))
    table = Table("column", *kids, title="values per key id")
    for name, counts in st.columns.items():
        table.add_row(name, *[str(counts.get(k, 0)) for k in kids])
    for name, source in st.hashes.items():
        table.add_row(f"{name} (hash)", *[f"= {source}" if i == 0 else "" for i, _ in enumerate(kids)])
    table.add_row("total", *[str(st.per_key().get(k, 0)) for k in kids])
    out = out_console()
    out.print(table)
    keys = Table("key id", "fingerprint", "state", title="key ring")
    for row in ring:
        keys.add_row(row["key_id"], row["fingerprint"], "active" if row["active"] else "readable")
    for kid in sorted(st.retired):
        keys.add_row(kid, "", "retired")
    out.print(keys)
    if st.running:
        out.print(f"rotation {st.running['id']} to {st.running['target']} is not finished "
                  f"({st.running['moved']} values moved): carepath keys rotate --to {st.running['target']}")


@app.command("rotate")
def rotate(to: str = typer.Option(..., "--to", help="key id to move every value to (must be in the key ring)"),
           batch: int = typer.Option(1000, min=1, max=50_000, help="rows per transaction"),
           pause: float = typer.Option(0.0, min=0, help="seconds to wait between batches (spares a busy database)"),
           db: Optional[str] = DB_OPTION) -> None:
    """Re-encrypt every value and recompute every keyed hash under key TO, in batches; resumes after a stop."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from carepath.store.crypto_rotation import RotationError, key_status
    from carepath.store.crypto_rotation import rotate as run_rotation

    store = open_cli_store(db, read_only=False)
    try:
        if to not in store.cipher.key_ids:
            fail(f"key {to!r} is not in the key ring ({', '.join(store.cipher.key_ids)}): add it with "
                 "CAREPATH_KEYS, the key folder (carepath keys new) or the KMS hook", ExitCode.NOT_FOUND)
        left = sum(n for k, n in key_status(store.db).per_key().items() if k != to)
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=err_console(), transient=False) as bar:
            task = bar.add_task(f"rotating to {to}", total=max(left, 1))
            result = run_rotation(store.db, store.cipher, to, actor=cli_actor(), batch=batch, pause=pause,
                                  progress=lambda item, n: bar.update(task, advance=n, description=item))
            bar.update(task, completed=max(left, 1), description=f"rotated to {to}")
    except RotationError as exc:
        fail(str(exc))
    finally:
        store.db.dispose()
    moved = sum(result.moved.values())
    verb = "resumed and finished" if result.resumed else "finished"
    out_console().print(f"rotation {result.rotation_id} to {to} {verb}: {moved} values re-encrypted "
                        f"(keyed hashes recomputed with them); every value is now under {to}")


@app.command("retire")
def retire(key_id: str = typer.Argument(..., help="key id to retire"), db: Optional[str] = DB_OPTION) -> None:
    """Retire a key that protects nothing any more (refused otherwise); it is then dropped from the ring."""
    from carepath.store.crypto_rotation import RotationError
    from carepath.store.crypto_rotation import retire as run_retire

    store = open_cli_store(db, read_only=False)
    try:
        run_retire(store.db, store.cipher, key_id, actor=cli_actor())
    except RotationError as exc:
        fail(str(exc))
    finally:
        store.db.dispose()
    out_console().print(f"key {key_id} retired: it protects nothing; remove it from the key ring's sources")


@app.command("new")
def new(key_id: str = typer.Argument(..., help="key id of the new key (1-32 characters, no ':')")) -> None:
    """Write a new random key to the key folder ($CAREPATH_HOME/keys/KEYID.key, mode 600)."""
    from carepath.settings import Settings
    from carepath.store import KeyError_
    from carepath.store.keyring import write_key_file

    if not key_id or ":" in key_id or len(key_id) > 32 or "/" in key_id:
        fail(f"key id {key_id!r} must be 1-32 characters without ':' or '/'", ExitCode.USAGE)
    try:
        path = write_key_file(Settings(), key_id)
    except KeyError_ as exc:
        fail(str(exc))
    out_console().print(f"new key {key_id} written to {path}; give it to every process's key ring, then "
                        f"carepath keys rotate --to {key_id}")
