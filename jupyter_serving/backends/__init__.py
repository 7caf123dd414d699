"""Execution backends: whatever runs replicas, behind the one interface in `base.py`."""
