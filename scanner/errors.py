"""The exception hierarchy. Only the CLI turns these into exit codes and one-line messages."""

from __future__ import annotations


class CtxscanError(Exception):
    """Root of every error ctxscan raises on purpose."""


class ConfigError(CtxscanError):
    """An invalid inventory file; carries the file, the line and the field that are wrong."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Render as `file:line: field: message`."""
        where = ""
        if self.file:
            where = self.file
            if self.line:
                where += f":{self.line}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class ProbeError(CtxscanError):
    """A source could not be probed; `retryable` says whether trying again can help."""

    def __init__(self, message: str, retryable: bool = False, reason: str = "error") -> None:
        self.message = message
        self.retryable = retryable
        # A small taxonomy: no_credentials, access_denied, not_found, throttled, timeout,
        # unreachable, error.
        self.reason = reason
        super().__init__(message)


class StoreError(CtxscanError):
    """The state store cannot be opened, is from a newer ctxscan, or failed an operation."""


class UsageError(CtxscanError):
    """A command was called with something that does not exist (an unknown id, a bad option)."""
