"""Reading a namespace as an operator does: nothing here writes to the log.

- `reading`: a namespace's log opened read-only (what every inspection command reads through);
- `views`: a session's history and state, read from the log;
- `show`: how those views print for people; `terminal`: record text made safe for a terminal.
"""
