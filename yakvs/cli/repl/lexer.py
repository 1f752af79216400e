"""Colours for the line being typed: the command word green when known, red when not; quoted
arguments set apart. Works on half-typed lines (an open quote is not an error while typing)."""

from __future__ import annotations

from collections.abc import Callable

from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.lexers import Lexer

from .commands import find_spec


def lex_line(line: str) -> StyleAndTextTuples:
    """Split one line into styled pieces; joining the texts gives the line back unchanged."""
    pieces: StyleAndTextTuples = []
    index, first = 0, True
    while index < len(line):
        char = line[index]
        if char.isspace():
            end = index
            while end < len(line) and line[end].isspace():
                end += 1
            pieces.append(("", line[index:end]))
        else:
            end = _word_end(line, index)
            word = line[index:end]
            if first:
                known = find_spec(word) is not None
                pieces.append(("class:command" if known else "class:unknown", word))
                first = False
            else:
                quoted = word[0] in "'\""
                pieces.append(("class:string" if quoted else "", word))
        index = end
    return pieces


def _word_end(line: str, start: int) -> int:
    quote = ""
    index = start
    while index < len(line):
        char = line[index]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char.isspace():
            break
        index += 1
    return index


class CommandLexer(Lexer):
    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        lines = document.lines

        def get_line(number: int) -> StyleAndTextTuples:
            return lex_line(lines[number]) if number < len(lines) else []

        return get_line
