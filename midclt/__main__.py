"""Run the midclt command line: ``python -m midclt``."""
from midclt.cli import main

raise SystemExit(main())
