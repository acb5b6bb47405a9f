"""Generated corpora come from the run's one seed, and the header says which (issue 19: the
bad-input corpus had no fixed seed, so a failure could not be generated again)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, seed, settings
from tests.fixtures import seeds
from tests.security.test_bad_input import JSON_VALUES, TEXT


def _corpus(strategy: Any, with_seed: int) -> list[Any]:
    drawn: list[Any] = []

    @seed(with_seed)
    @settings(max_examples=40, database=None, deadline=None)
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


@pytest.mark.parametrize("strategy", [TEXT, JSON_VALUES], ids=["text", "json"])
def test_the_same_seed_generates_the_same_corpus(strategy: Any) -> None:
    first = _corpus(strategy, seeds.SEED)
    assert first == _corpus(strategy, seeds.SEED)
    assert first != _corpus(strategy, seeds.SEED + 1)


def test_the_header_names_the_seed(pytestconfig: pytest.Config) -> None:
    assert seeds.pytest_report_header(pytestconfig) == (
        f"seed: {seeds.SEED} (hypothesis @seed and random; set NOTIFYFLOW_TEST_SEED to change it)"
    )


def test_the_generated_tests_use_the_seed() -> None:
    import inspect

    import tests.api.test_directory_fuzz as fuzz
    import tests.security.test_bad_input as bad_input

    assert (
        fuzz.test_junk_is_refused_with_an_envelope_and_writes_nothing._hypothesis_internal_use_seed
        == seeds.SEED
    )  # type: ignore[attr-defined]  # noqa: E501
    source = inspect.getsource(bad_input)
    assert source.count("@given(") == source.count("@seed(SEED)") == 3
