"""Simulation: a synthetic HIS and the ``carepath demo`` runner on a virtual clock."""
