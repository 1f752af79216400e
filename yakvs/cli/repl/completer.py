"""Tab completion: command names in the first word, keys seen recently in the key position."""

from __future__ import annotations

import shlex
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from .commands import COMMAND_NAMES, find_spec

# Commands whose first argument is a key (or, for KEYS, a key prefix).
_KEY_COMMANDS = frozenset({"SET", "GET", "DELETE", "TTL", "EXISTS", "KEYS"})


class KeyMemory:
    """Keys recently seen in GET/SET/KEYS, most recent last, bounded so a huge KEYS stays cheap."""

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._keys: OrderedDict[str, None] = OrderedDict()

    def remember(self, keys: Iterable[str]) -> None:
        for key in keys:
            if not key:
                continue
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self._limit:
            self._keys.popitem(last=False)

    def forget(self, key: str) -> None:
        self._keys.pop(key, None)

    def matching(self, prefix: str) -> list[str]:
        """Keys starting with prefix, most recently seen first."""
        return [key for key in reversed(self._keys) if key.startswith(prefix)]

    def __len__(self) -> int:
        return len(self._keys)


class YakvsCompleter(Completer):
    def __init__(self, keys: KeyMemory) -> None:
        self.keys = keys

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        words = _split_partial(document.text_before_cursor)
        current = words[-1]
        if len(words) == 1:
            yield from _complete_command(current)
            return
        spec = find_spec(words[0])
        if spec is None or len(words) != 2:
            return
        if spec.name == "HELP":
            yield from _complete_command(current)
        elif spec.name in _KEY_COMMANDS:
            yield from _complete_key(current, self.keys)


def _split_partial(text: str) -> list[str]:
    """Split a line being typed into raw words, respecting quotes; the last may be open or empty.

    shlex cannot help here: it rejects the unbalanced quote of a key still being typed.
    """
    words: list[str] = []
    current: list[str] = []
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
            continue
        current.append(char)
    # The word under the cursor, possibly empty when the line ends in a space.
    words.append("".join(current))
    return words


def _complete_command(word: str) -> Iterator[Completion]:
    # Answer in the case the user is typing in: "ge<Tab>" gives "get", "GE<Tab>" gives "GET".
    lower = word.islower() or not word
    for name in COMMAND_NAMES:
        spec = find_spec(name)
        if spec is not None and name.startswith(word.upper()):
            text = name.lower() if lower else name
            yield Completion(text, start_position=-len(word), display_meta=spec.syntax)


def _complete_key(word: str, keys: KeyMemory) -> Iterator[Completion]:
    prefix = word.replace("'", "").replace('"', "")
    for key in keys.matching(prefix):
        # Quote keys with spaces or quotes so the completed line parses back to the same key.
        yield Completion(shlex.quote(key), start_position=-len(word), display=key)
