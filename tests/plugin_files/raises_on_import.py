"""Test plugin that fails while being imported."""

raise RuntimeError("plugin import exploded")
