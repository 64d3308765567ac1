"""``python -m fastmotion ...`` (and ``torchrun -m fastmotion train ...``) run the command line."""
import sys

from fastmotion.cli import main

sys.exit(main())
