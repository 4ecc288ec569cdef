import os
import sys

from .cli import main

code = main()
try:
    ranks = int(os.environ.get("WORLD_SIZE") or 1)
except ValueError:
    ranks = 1
if ranks > 1:
    # A torchrun rank whose work is done, written and closed, its process group ended
    # (pyclr.train.distributed.end_process_group): it leaves without interpreter finalization,
    # where torch's threads can still race the GIL's teardown and abort the process with
    # "terminate called without an active exception" (pytorch/pytorch#190489; seen in CI under
    # load after every rank had finished).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
