"""Run the embedded engine (nx-27017) in this process, and stop it once its parent is gone.

``python -m memvault.db.engine_guard LIFELINE_FD PARENT_PID ENGINE_ARGUMENT...``

``LIFELINE_FD`` is the read end of a pipe whose write end only the parent holds. However the
parent ends (``kill -9`` included), the kernel closes that end and a read here sees end-of-file;
the engine then gets SIGTERM, its own clean stop, and is made to exit if it has not within
``GRACE_S``. The parent's pid is a backstop (a copy of the write end that outlives the parent,
in a child it forked). Linux's ``PR_SET_PDEATHSIG`` is not used: it fires when the *thread* that
started the child ends, and engines are started from worker threads.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import sys
import threading
import time

ENGINE_MODULE = "nx_27017.nx_27017"
POLL_S = 1.0
GRACE_S = 10.0


def wait_for_parent_to_go(lifeline: int, parent: int) -> None:
    """Return once the parent has exited: the lifeline reads end-of-file or we were re-parented."""
    while True:
        readable, _, _ = select.select([lifeline], [], [], POLL_S)
        if readable and not os.read(lifeline, 64):
            return
        if os.getppid() != parent:
            return


def _guard(lifeline: int, parent: int) -> None:
    wait_for_parent_to_go(lifeline, parent)
    print(
        f"memvault: the process that started this engine ({parent}) is gone; stopping",
        file=sys.stderr,
        flush=True,
    )
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(1)


def main(argv: list[str]) -> None:
    lifeline, parent, *engine_arguments = argv
    threading.Thread(
        target=_guard, args=(int(lifeline), int(parent)), name="engine-guard", daemon=True
    ).start()
    sys.argv = ["nx_27017", *engine_arguments]
    sys.exit(importlib.import_module(ENGINE_MODULE).main())


if __name__ == "__main__":
    main(sys.argv[1:])
