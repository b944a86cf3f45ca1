"""`python -m grok_worker` is `grok-worker`."""

import sys

from grok_worker.cli import main

sys.exit(main())
