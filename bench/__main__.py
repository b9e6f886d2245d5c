"""``python -m bench``: run the throughput benchmark."""

import sys

from bench.run import main

sys.exit(main())
