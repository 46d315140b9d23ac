"""rhovid.evaluate stage (see DESIGN.md)."""
