"""Fault points for the black-box tests: a process dies exactly between two durable steps.

``NOTIFYFLOW_FAULT=<name>`` makes the process exit at once (status 70, no clean-up) when it
reaches ``fault_point(<name>)``. Unset, a fault point costs one environment lookup. Points:

- ``exit_after_record``: the starter committed a notification and has not started its workflow.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

FAULT_EXIT_STATUS = 70


def fault_point(name: str) -> None:
    if os.environ.get("NOTIFYFLOW_FAULT") == name:
        log.critical("fault point %s reached: exiting as NOTIFYFLOW_FAULT asks", name)
        os._exit(FAULT_EXIT_STATUS)
