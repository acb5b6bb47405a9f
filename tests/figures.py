"""Figures a test measured (seconds, counts), printed together at the end of the run.

Tests never assert a duration; they report it here, and the summary shows it:
``figure("answer route longest wait", 0.4, "s")``.
"""

from __future__ import annotations

FIGURES: list[str] = []


def figure(name: str, value: float, unit: str = "") -> None:
    FIGURES.append(f"{name}: {value:.2f}{' ' + unit if unit else ''}")
