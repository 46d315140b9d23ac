"""rhovid.store stage (see DESIGN.md)."""
