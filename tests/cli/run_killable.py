"""`tasktune run` in a process of its own, with each training step slowed down so that a test can
SIGKILL it between checkpoints (R3 at the level a user sees).

Usage: python -m tests.cli.run_killable SLEEP_S tasktune-run-arguments...
"""

from __future__ import annotations

import sys
import time

from tasktune.cli.main import main
from tasktune.routes.prompt_tuning.causal import CausalSoftPrompt

if __name__ == "__main__":
    sleep_s = float(sys.argv[1])
    loss = CausalSoftPrompt.loss

    def slow_loss(self, batch):
        time.sleep(sleep_s)
        return loss(self, batch)

    CausalSoftPrompt.loss = slow_loss
    sys.exit(main(sys.argv[2:]))
