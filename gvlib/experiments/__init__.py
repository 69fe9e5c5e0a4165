"""Reproductions of papers' tables as commands, e.g. ``python -m gvlib.experiments.iwae_table --help``.

Each module here is a command line program (and a `run(...)` function the notebooks call with small budgets).
"""
