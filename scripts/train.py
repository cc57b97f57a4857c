#!/usr/bin/env python
"""Thin wrapper: ``python scripts/train.py ARGS`` is ``snn-lats train ARGS``.

Also the script to give torchrun::

    torchrun --nproc_per_node=2 scripts/train.py --recipe models/demo_digits.yaml --output-dir runs/ddp
"""

import sys

from snn_lats.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
