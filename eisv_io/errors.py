"""The exceptions eisv raises for bad input (files, rows, fields); the tools' `main`s turn them into a message
and an exit code. Here, below every layer, because the atomic file helpers, the evaluation library and
training raise them."""


class ToolError(Exception):
    """Bad input (missing file, malformed CSV, unreadable audio ...); the message names the file or row."""


class AudioFileError(ToolError):
    """A ToolError about one audio file; `path` is that file, so callers can add where it is used."""

    def __init__(self, path, message: str):
        super().__init__(message)
        self.path = path


def one_line(error: BaseException, limit: int = 300) -> str:
    """`error` as one short line: its type (unless it is a ToolError) and the first line of its message."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text[:limit]
    if isinstance(error, ToolError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
