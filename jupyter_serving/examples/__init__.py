"""Small models to try the server with, logged from code (MLflow's models-from-code)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def echo_agent_path() -> str:
    """The source of a minimal streaming `ResponsesAgent`, to pass as `log_model(python_model=...)`."""
    return str(HERE / "echo_agent.py")


__all__ = ["echo_agent_path"]
