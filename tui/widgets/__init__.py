"""The terminal UI's widgets, one per module."""
