"""The one exception the tools raise for bad input; command `main`s turn it into a message + exit code."""


class ToolError(Exception):
    """Bad input (missing file, malformed CSV, unreadable audio ...); the message names the file or row."""
