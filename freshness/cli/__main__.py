"""`python -m freshness.cli` = the `freshness` command."""

import sys

from freshness.cli.main import main

sys.exit(main())
