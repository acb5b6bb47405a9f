"""Shared fixtures live in tests/fixtures/, one module per kind of real component."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.temporal",
    "tests.fixtures.fakes",
    "tests.fixtures.lifecycle",
    "tests.fixtures.seeds",
]
