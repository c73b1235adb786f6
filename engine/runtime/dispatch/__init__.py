"""The dispatcher's parts, one module per job, in the order a batch goes through them.

:mod:`~carepath.runtime.dispatcher` runs a batch top to bottom:

1. :mod:`.claim` -- an empty sweep costs one read; due touchpoints are leased in one statement;
   abandoned leases are taken over (leases, their renewal and fencing live here too);
2. :mod:`.quarantine` -- a touchpoint that keeps killing its workers is set aside;
3. :mod:`.decide` -- per touchpoint, in memory: cancel, skip, defer, open a task, change tags or send;
4. :mod:`.write` -- decisions, results and the next call's ``sending`` rows, one fenced transaction each time;
5. :mod:`.send` -- provider calls, chunk by chunk, channel after channel, fallback tasks last;
6. :mod:`.reconcile` -- a call whose outcome is unknown is looked up before anything is sent again.

:mod:`carepath.store.statements` holds the SQL of the hot path, written once and run through the driver.
"""
