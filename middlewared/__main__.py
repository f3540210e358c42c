"""Run the daemon with ``python -m middlewared``."""
from middlewared.main import main

raise SystemExit(main())
