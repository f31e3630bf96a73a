"""`python -m sendit_worker`: the same as the `sendit` command."""

import sys

from sendit_worker.cli.main import main

sys.exit(main())
