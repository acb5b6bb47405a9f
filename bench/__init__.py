"""``python -m bench`` (``notifyflow bench``): the notification lifecycle measured side by side
with Temporal's own floor, in one run, with the same server and worker settings.

Phases: B0 (a trivial workflow with one no-op activity), B1 (a bare update round trip to a
waiting workflow), N (the full lifecycle through the real starter, worker, PostgreSQL, offline AI
and a fake Twilio on 127.0.0.1), L (answer-to-delivered latency, one answer at a time) and the
open-load phase (thousands of notifications open at once, then all answered). See
docs/performance.md.
"""
