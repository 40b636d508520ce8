"""`python -m scanner` is `ctxscan`."""

from scanner.cli import run

run()
