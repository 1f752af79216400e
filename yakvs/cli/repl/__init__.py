"""The yakvs-client REPL and one-shot mode, split by concern.

commands: parsing and help; render: replies -> text; output: where text goes; completer: Tab;
toolbar: bottom line; history: where history lives; connection: reconnecting link; runner: one
command or a script; session: the interactive loop.
"""
