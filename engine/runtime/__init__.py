"""The runtime: ingest, planning, scheduling, dispatch, policy and the clock."""
