import sys

from snn_lats.cli import main

sys.exit(main())
