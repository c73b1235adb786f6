"""What counting messages on the portraits costs the SQLite dispatch sweep: an upper bound, not a change.

    python benchmarks/sweep_fresh.py plan 10000 /tmp/base10k      # once
    python benchmarks/portrait_cost.py /tmp/base10k none          # the sweep as it is
    python benchmarks/portrait_cost.py /tmp/base10k days          # without the day rows of messages sent
    python benchmarks/portrait_cost.py /tmp/base10k all           # without counting messages sent at all

``days`` leaves out the ``portrait_days`` upsert of every batch's sends (what keeping the day counts anywhere
else could save at most), ``all`` leaves out :func:`carepath.runtime.portrait.record_sends` (the counts and the
day rows: what counting messages from the touchpoints when read could save at most). Both give portraits wrong
counts: for measuring only. Run the three alternately (load moves CPU seconds), or under ``valgrind
--tool=cachegrind --cache-sim=no`` on 2,000 patients for instructions (start-up: ``sweep_fresh.py sweep DIR 0``).
"""
import runpy
import sys
from pathlib import Path

import carepath.runtime.dispatch.write as write
import carepath.runtime.portrait as portrait


def leave_out(variant: str) -> None:
    """Patch the dispatcher's portrait writes as ``variant`` says (``none``, ``days`` or ``all``)."""
    if variant == "days":
        executemany = portrait.executemany_raw

        def without_days(conn, sql, rows, *args, **kwargs):  # noqa: ANN001, ANN202
            return None if sql is portrait._DAY_SQL else executemany(conn, sql, rows, *args, **kwargs)

        portrait.executemany_raw = without_days
    elif variant == "all":
        write.record_sends = lambda conn, sent, now: None
    elif variant != "none":
        raise SystemExit(f"unknown variant {variant!r}: none, days or all")


if __name__ == "__main__":
    leave_out(sys.argv[2])
    print(sys.argv[2], end=": ")
    sys.argv = ["sweep_fresh.py", "sweep", sys.argv[1]]
    runpy.run_path(str(Path(__file__).with_name("sweep_fresh.py")), run_name="__main__")
