"""`python -m benchmarks [--quick] [--no-peers] [--models a,b] [--out benchmarks/RESULTS.md]`."""

from .run import main

raise SystemExit(main())
