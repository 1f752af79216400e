"""The yakvs-client REPL and one-shot mode, split by concern.

commands: parsing and help; render: replies -> text; output: where text goes (colour only on a
terminal); completer: Tab; lexer: colours while typing; toolbar: bottom line; history: where
history lives; connection: the reconnecting link; runner: one command or a script; session: the
interactive loop. Only completer, lexer and session import prompt_toolkit.
"""
