"""``python -m asrbatch.server``: run the reference WebUI."""

from asrbatch.server import main

raise SystemExit(main())
