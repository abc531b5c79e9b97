"""`python -m pipeline` is the `pipeline` command."""

import sys

from pipeline.service.cli import main

sys.exit(main())
