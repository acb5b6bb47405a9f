"""notifyflow: durable human-in-the-loop notifications for conversational commerce, on Temporal."""

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def _version() -> str:
    """The installed distribution's version (pyproject.toml's, through importlib.metadata): the
    one string ``notifyflow --version`` and the API's OpenAPI ``info.version`` show."""
    try:
        return version("notifyflow")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    # Looked up on first use, not at import: the workflow sandbox imports this package afresh
    # for every workflow it runs, and reading the distribution's metadata (a scan of sys.path)
    # cost 1 % of the worker's CPU in the bench.
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
