"""Pure pydantic contracts: notification types, answer schemas, workflow and activity I/O.

Everything here is sandbox-safe: no I/O, no settings, no clocks.
"""
