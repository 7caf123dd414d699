"""The Databricks-compatible REST surface: Tornado handlers and wire rendering."""
