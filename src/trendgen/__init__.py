"""trendgen: fashion trend analysis and AI garment design."""

__version__ = "0.1.0"
