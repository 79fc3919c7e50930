"""`python -m salesarck` is the `salesarck` command."""

from salesarck.cli import main

main()
