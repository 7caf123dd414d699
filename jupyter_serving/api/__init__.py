"""The Databricks-compatible REST surface: request schema, rendering, Tornado handlers."""
