"""``python -m benchmarks``: the side-by-side comparison (see ``benchmarks._compare``)."""

from ._compare import main

raise SystemExit(main())
