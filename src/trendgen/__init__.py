"""trendgen: fashion trend analysis and AI garment design."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trendgen")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+source"
