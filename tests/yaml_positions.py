"""Where a token stands in a YAML text, to check the file:line:col of error messages."""


def pos(text: str, token: str, nth: int = 0) -> str:
    """'L:C' (1-based) of the nth occurrence of `token` in `text`."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(token, start + 1)
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return f"{line}:{col}"
