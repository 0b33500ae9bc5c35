"""Exporters: one module per format, each with `export(...)` returning what the report records about it."""
