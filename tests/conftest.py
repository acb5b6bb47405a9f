"""Shared fixtures live in tests/fixtures/, one module per kind of real component."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.temporal",
    "tests.fixtures.fakes",
    "tests.fixtures.lifecycle",
    "tests.fixtures.seeds",
]


def pytest_terminal_summary(terminalreporter: object) -> None:
    from tests.figures import FIGURES

    if FIGURES:
        terminalreporter.section("figures")  # type: ignore[attr-defined]
        for line in FIGURES:
            terminalreporter.write_line(line)  # type: ignore[attr-defined]
