"""User-facing errors.

A `UserError` is a mistake the user can fix (bad YAML, unknown layer, wrong shape, missing or
bad data). The command line prints its message alone and exits with status 2; anything else is
a bug in layerflow and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """A mistake in the user's files or arguments; `str(err)` is the whole message."""

    exit_code = 2
    quiet = False  # True: end with exit_code and print nothing (said by another process)


class ElsewhereError(UserError):
    """A failure of another process of a data-parallel run, raised in the processes where it
    did not happen so that every process stops: they exit with its status and print nothing,
    the process where it happened prints it (once for the whole run)."""

    quiet = True

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class DivergenceError(UserError):
    """Training produced a NaN or infinite loss or param (exit status 3)."""

    exit_code = 3


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when nothing is close.

    Case is ignored when comparing, so "Relu" suggests "ReLU".
    """
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(str(choice).lower(), str(choice))
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return f' (did you mean "{by_lower[close[0]]}"?)' if close else ""


def file_error(path, exc: Exception, expected: str = "a file", what: str = "file",
               cls: type[UserError] = UserError) -> UserError:
    """The UserError for a file that could not be opened or read, naming it:
    '<path>: file not found', '<path>: is a folder, expected a YAML file',
    '<path>: not a UTF-8 text file (...)' or '<path>: cannot read: <reason>'.

    `expected` says what the path should have been, `what` names the file in the other
    messages ("weights file"); `cls` is the error class (SnapshotError for snapshots).
    """
    if isinstance(exc, FileNotFoundError):
        return cls(f"{path}: {what} not found")
    if isinstance(exc, IsADirectoryError):
        return cls(f"{path}: is a folder, expected {expected}")
    if isinstance(exc, UnicodeDecodeError):
        return cls(f"{path}: not a UTF-8 text file ({exc.reason})")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return cls(f"{path}: cannot read{'' if what == 'file' else ' ' + what}: {reason}")


def a_an(word: str) -> str:
    """'a ReLU', 'an Eltwise', 'an SVMLoss', 'an LRN': the article by how the name sounds
    (an initialism read letter by letter starts with a vowel sound for F H L M N R S X)."""
    w = str(word)
    acronym = len(w) > 1 and w[:2].isupper()
    vowel = w[:1].lower() in "aeiou" or (acronym and w[0] in "FHLMNRSX")
    return f"{'an' if vowel else 'a'} {w}"


def as_written(value) -> str:
    """A stored number as a data file would write it: 4 (not 4.0), -1, 1.5, and 0.1 for a
    float32 0.1 (the shortest text that reads back as the same value of its dtype)."""
    import numpy as np

    value = np.asarray(value)[()]
    if value.dtype.kind in "iub" or float(value).is_integer():
        return str(int(value))
    return np.format_float_positional(value, trim="-")


def where(file: str | None, line: int | None = None, col: int | None = None) -> str:
    """'file:line:col' with whatever parts are known."""
    parts = [str(file) if file else "<input>"]
    if line is not None:
        parts.append(str(line))
        if col is not None:
            parts.append(str(col))
    return ":".join(parts)
