"""The interactive way in (`netdoctor tui`). Importing this package imports Textual: only the `tui`
command does, so that the rest of the CLI starts fast."""
