"""notifyflow: durable human-in-the-loop notifications for conversational commerce, on Temporal."""

from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, through importlib.metadata): the
    one string ``notifyflow --version`` and the API's OpenAPI ``info.version`` show."""
    try:
        return version("notifyflow")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


__version__ = _version()
