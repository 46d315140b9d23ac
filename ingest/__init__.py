"""rhovid.ingest stage (see DESIGN.md)."""
