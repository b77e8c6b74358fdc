"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class DyBenchError(Exception):
    """A problem the user can fix (bad input, missing file or weights): the message says how."""
