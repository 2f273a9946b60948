"""Exceptions raised by qsparse."""


class QsparseError(RuntimeError):
    """A native kernel refused a call (the message is the C library's status message), or a native library is
    missing or incompatible. Bad arguments are caught earlier, in Python, as ValueError or TypeError."""
