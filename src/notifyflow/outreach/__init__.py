"""Reaching a person: the delivery ledger, templates, the 24 h / Instagram / template decision.

Activities hold an :class:`notifyflow.outreach.service.Outreach` (built once in ``worker.py``)
and never talk to a channel themselves."""
