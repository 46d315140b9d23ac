"""rhovid.train stage (see DESIGN.md)."""
