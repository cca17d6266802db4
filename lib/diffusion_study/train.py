"""`python -m diffusion_study.train ...`: the training command line (`studies.cli`), kept at this name for the README.

The training loop itself is `training.loop.train`; this module only starts the command line, so nothing
in the library imports it and the loop never imports the command line (no cycle).
"""

import sys

from diffusion_study.studies.cli import main

if __name__ == "__main__":
    sys.exit(main())
