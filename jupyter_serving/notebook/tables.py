"""`jupyter_serving.inference_table(...)`: an endpoint's inference table as a pandas DataFrame."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def inference_table(endpoint: str | os.PathLike[str], **kwargs: Any) -> Any:
    """The inference table of an endpoint (by name, through the server this kernel uses), or of a
    payload-table folder given as a path. Keyword arguments go to the reader (`unpack`, `start`, `end`)."""
    path = Path(endpoint)
    if path.is_dir():
        from jupyter_serving.tables.reader import inference_table as read

        return read(path, **kwargs)
    from jupyter_serving.notebook.client import Client

    return Client().inference_table(str(endpoint), **kwargs)
