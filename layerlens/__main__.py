"""`python -m layerlens`: the command line."""

from .cli import main

raise SystemExit(main())
