"""Workflows: one module per workflow; nothing here touches I/O."""
