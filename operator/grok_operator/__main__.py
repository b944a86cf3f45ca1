"""`python -m grok_operator` is `grok-operator`."""

from grok_operator.cli import main

raise SystemExit(main())
