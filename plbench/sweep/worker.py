"""``python -m plbench.sweep.worker STAGE.json``: run one stage in a fresh process (``--jobs N``).

A fresh process per stage lets the parent give it its own ``CUDA_VISIBLE_DEVICES``. Exit status: 0 done,
2 bad input (the message is on stderr), 130 interrupted (Ctrl-C; a training saved its checkpoint),
1 anything else (traceback on stderr).
"""

from __future__ import annotations

import logging
import sys

from plbench.artifacts.files import read_json
from plbench.errors import InputError
from plbench.sweep.execute import execute_stage
from plbench.sweep.local import is_interrupt
from plbench.sweep.stages import Stage


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m plbench.sweep.worker STAGE.json\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stage = Stage.from_dict(read_json(argv[0], "run the sweep again (the parent writes this file)"))
    try:
        execute_stage(stage)
    except InputError as e:
        sys.stderr.write(e.message + "\n")
        return 2
    except BaseException as e:
        if is_interrupt(e):
            sys.stderr.write(f"interrupted: {e}\n")
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
