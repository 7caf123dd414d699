"""Promotion: the same endpoint on another workspace (`jupyter-serving promote`, `%serve promote`).

`promote.py` reads the source endpoint and creates or updates the target through databricks-sdk;
`models.py` copies the served model versions between MLflow registries (`--copy-models`);
`workspace.py` builds the target's `WorkspaceClient` and turns failures into one-line errors.
"""

from jupyter_serving.promotion.models import CopiedVersion
from jupyter_serving.promotion.promote import PromotionOptions, PromotionResult, promote
from jupyter_serving.promotion.workspace import PromotionError, TargetAuth

__all__ = ["CopiedVersion", "PromotionError", "PromotionOptions", "PromotionResult", "TargetAuth", "promote"]
