"""The one error of the data package."""

__all__ = ["DataError"]


class DataError(ValueError):
    """The data on disk cannot be used (missing folder, empty class, unreadable image)."""
