"""The one place that knows StoreSafe's version."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("storesafe")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0+source"
