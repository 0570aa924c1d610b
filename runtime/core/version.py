"""The installed fer-edge's version, for what a server or a device announces about itself."""
from __future__ import annotations


def package_version() -> str:
    """fer-edge's version from its installed metadata; "0" in a source tree that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer-edge")
    except PackageNotFoundError:
        return "0"
