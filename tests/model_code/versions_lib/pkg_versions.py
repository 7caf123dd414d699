"""Helper shipped with the `versions` fixture model through code_paths."""

import importlib.metadata
import sys


def version_of(name: str) -> str:
    if name == "python":
        return ".".join(map(str, sys.version_info[:3]))
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "<missing>"
