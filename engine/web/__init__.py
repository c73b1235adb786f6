"""The web hooks app that ``carepath serve`` runs: plugin callback routes, ``POST /events``, health and metrics."""
