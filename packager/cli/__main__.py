"""`python -m packager.cli`: the `pack` command line."""

from . import main

main()
