"""`python -m selfguard_guardrails.cli`, the same as the `selfguard` script."""

import sys

from . import main

sys.exit(main())
