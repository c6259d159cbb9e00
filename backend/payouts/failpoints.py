"""Crash points for the settlement worker's fault tests (tests/settlement/test_exactly_once.py).

`AUTOPOOL_SETTLEMENT_FAILPOINT=<name>[:<n>]` kills the process with SIGKILL the n-th time (1 by
default) it reaches the step boundary `<name>`. Unset in production: then a failpoint is a
dictionary lookup and nothing else. Names: after_sign, after_sign_stored, after_attempt_stored,
after_broadcast, after_receipt.
"""

from __future__ import annotations

import os
import signal

ENV = "AUTOPOOL_SETTLEMENT_FAILPOINT"
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Die here, at once and without cleanup, if the environment asks for it."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        # Straight to file descriptor 2, not through sys.stderr: a Dramatiq worker's sys.stderr
        # is a pipe its parent reads, and the parent may stop reading before it drains.
        os.write(2, f"failpoint {spec}: SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
