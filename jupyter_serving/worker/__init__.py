"""The worker: one replica's process, self-contained so any interpreter can run it.

It imports only its own modules (protocol, batcher, scoring) and MLflow, never the server's.
"""
