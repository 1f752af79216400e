"""Where rendered answers go: stdout for answers, stderr for errors; colour only on a terminal."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, TextIO

from yakvs.protocol import Reply

from .commands import Command
from .render import Fragments, plain, render_error, render_reply, reply_to_json

if TYPE_CHECKING:
    from prompt_toolkit.styles import Style

# prompt_toolkit takes ~0.3 s to import: scripts that call `yakvs-client get k` in a loop and
# never print in colour should not pay for it, so it is imported on first coloured output.


@cache
def style() -> Style:
    """The REPL's style sheet (class names used by render.py)."""
    from prompt_toolkit.styles import Style

    return Style.from_dict(
        {
            "ok": "ansigreen",
            "value": "",
            "key": "ansicyan",
            "dim": "ansibrightblack",
            "label": "bold",
            "error": "ansired",
            "warning": "ansiyellow",
            "prompt": "bold",
            "command": "ansigreen bold",
            "unknown": "ansired",
            "string": "ansiyellow",
            "bottom-toolbar": "noreverse bg:ansiblue ansiwhite",
        }
    )


class Printer:
    """Writes replies in one of three shapes: styled (terminal), raw (pipe) or JSON lines."""

    def __init__(
        self, out: TextIO, err: TextIO, *, pretty: bool, color: bool, json_lines: bool
    ) -> None:
        self.out = out
        self.err = err
        self.pretty = pretty and not json_lines
        self.color = color and not json_lines
        self.json_lines = json_lines

    def reply(self, command: Command, reply: Reply) -> None:
        if self.json_lines:
            self._write(self.out, [("", reply_to_json(reply))])
        elif reply.ok:
            self._write(self.out, render_reply(command, reply, pretty=self.pretty))
        else:
            self._write(self.err, render_error(reply, pretty=self.pretty))

    def text(self, text: str) -> None:
        """Help and banners: plain text on stdout."""
        self._write(self.out, [("", text)])

    def error(self, message: str) -> None:
        """A problem on the client's side (usage, connection): one line on stderr."""
        self._write(self.err, [("class:error", message)])

    def info(self, message: str) -> None:
        """Banners: stderr, so `yakvs-client | tee answers` records only answers."""
        self._write(self.err, [("class:dim", message)])

    def notice(self, message: str) -> None:
        """Connection news (lost, back): stderr, so piped answers stay clean."""
        self._write(self.err, [("class:warning", message)])

    def _write(self, stream: TextIO, fragments: Fragments) -> None:
        if not fragments:
            return
        if self.color:
            from prompt_toolkit import print_formatted_text
            from prompt_toolkit.formatted_text import FormattedText

            print_formatted_text(FormattedText(fragments), style=style(), file=stream)
        else:
            stream.write(plain(fragments) + "\n")
        stream.flush()
