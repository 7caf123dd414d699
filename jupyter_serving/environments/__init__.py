"""Per-model Python environments, a service every backend uses: what a model needs (`requirements`)
and the cache of environments built with uv for it (`cache`).

The local backend runs workers in them; the Ray backend turns the same requirements into a
runtime_env; `notebook/validate.py` builds one ahead of a deploy. None of them owns it.
"""
