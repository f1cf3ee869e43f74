"""Protobuf text format (.prototxt): parsing with protobuf's own `text_format`, plus an index of
where each field was written, so that errors about a converted net point at prototxt lines.

`text_format` gives the values but not their positions. `positions(text)` walks the tokens of
the text (strings, comments, names, punctuation) and records, for every field occurrence, its
path and line:column: `("layer", 3, "convolution_param", "kernel_size", 0) -> (41, 5)`;
repeated fields are indexed in the order written, as protobuf stores them, and scalar values
are kept as written (`type` values let a layer of an unknown type be named before parsing).
It never interprets values: the message itself always comes from `text_format`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UserError

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+) | (?P<newline>\n) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<word>[-+]?[A-Za-z0-9_.]+(?:[eE][-+]?[0-9]+)?[fF]?)
  | (?P<punct>[{}<>\[\]:,;])
  | (?P<other>.)
""", re.VERBOSE)


@dataclass
class Positions:
    """Where each field path was written (1-based line and column) and scalar values."""

    file: str
    at: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    values: dict[tuple, str] = field(default_factory=dict)

    def mark(self, path: tuple) -> str | None:
        """'file:line:col' of `path`, or of its deepest written prefix."""
        while path:
            if path in self.at:
                line, col = self.at[path]
                return f"{self.file}:{line}:{col}"
            path = path[:-1]
        return None

    def top_names(self) -> list[str]:
        return list(dict.fromkeys(p[0] for p in self.at if len(p) == 1 or
                                  (len(p) == 2 and isinstance(p[1], int))))


def _tokens(text: str):
    line, start = 1, 0
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "newline":
            line, start = line + 1, m.end()
        elif kind not in ("space", "comment"):
            yield kind, m.group(), line, m.start() - start + 1


def positions(text: str, file: str) -> Positions:
    """Index the fields of a text-format message. Never raises: malformed text is left to
    `text_format`, which reports it; the index then covers what came before."""
    pos = Positions(file)
    toks = list(_tokens(text))
    counts: list[dict[str, int]] = [{}]
    stack: list[tuple] = [()]
    i = 0
    n = len(toks)

    def add(name, line, col):
        c = counts[-1]
        idx = c.get(name, 0)
        c[name] = idx + 1
        path = stack[-1] + (name, idx)
        pos.at.setdefault(stack[-1] + (name,), (line, col))
        pos.at[path] = (line, col)
        return path

    while i < n:
        kind, tok, line, col = toks[i]
        if tok in ("}", ">"):
            if len(stack) > 1:
                stack.pop()
                counts.pop()
            i += 1
            continue
        if kind != "word" and not (kind == "punct" and tok == "["):
            i += 1
            continue
        if kind == "punct":  # an extension or Any name `[foo.bar]`: skip to its `]`
            while i < n and toks[i][1] != "]":
                i += 1
            i += 1
            continue
        nxt = toks[i + 1][1] if i + 1 < n else ""
        if nxt == ":":
            after = toks[i + 2] if i + 2 < n else None
            if after is not None and after[1] in ("{", "<"):
                path = add(tok, line, col)
                stack.append(path)
                counts.append({})
                i += 3
            elif after is not None and after[1] == "[":
                # `f: [1, 2]`: one occurrence per element; a list of messages is indexed as
                # one place (rare in Caffe's files)
                j, depth = i + 3, 0
                while j < n and not (toks[j][1] == "]" and depth == 0):
                    k2, t2, l2, c2 = toks[j]
                    if t2 in ("{", "<"):
                        if depth == 0:
                            add(tok, l2, c2)
                        depth += 1
                    elif t2 in ("}", ">"):
                        depth -= 1
                    elif depth == 0 and t2 != ",":
                        pos.values[add(tok, l2, c2)] = t2
                    j += 1
                i = j + 1
            else:
                path = add(tok, line, col)
                if after is not None:
                    pos.values[path] = after[1]
                    # adjacent strings concatenate: "a" "b"
                    j = i + 3
                    while j < n and after[0] == "string" and toks[j][0] == "string":
                        j += 1
                    i = j
                else:
                    i += 2
        elif nxt in ("{", "<"):
            path = add(tok, line, col)
            stack.append(path)
            counts.append({})
            i += 2
        else:
            i += 1
    return pos


def unquote(token: str) -> str:
    """A scanned string token's text (escapes of plain names need no decoding)."""
    if len(token) >= 2 and token[0] in "\"'" and token[-1] == token[0]:
        return token[1:-1]
    return token


def parse(text: str, message, file: str):
    """Parse text format into `message` with protobuf's text_format; a syntax error or an
    unknown field is a UserError naming file:line:col."""
    from google.protobuf import text_format

    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        line, col = (exc.GetLine(), exc.GetColumn()) if hasattr(exc, "GetLine") else (None, None)
        msg = str(exc)
        # protobuf prefixes "line:col : "; keep the message, put the place first
        m = re.match(r"^(\d+):(\d+)\s*:\s*(.*)$", msg, re.S)
        if m:
            line, col, msg = int(m.group(1)), int(m.group(2)), m.group(3)
        where = f"{file}:{line}:{col}" if line else file
        raise UserError(f"{where}: prototxt error: {msg}") from None
    return message
