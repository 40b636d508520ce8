"""`python -m scanner` is `ctxscan`."""

from scanner.cli import main

main(prog_name="ctxscan")
