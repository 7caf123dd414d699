"""Feature tables, lookups and training sets, and the models that look their features up when served.

Names follow Databricks' Feature Engineering client (`FeatureEngineeringClient`, `FeatureLookup`,
`create_training_set`, `log_model`, `score_batch`, `create_feature_spec`); the code is our own.
"""

from __future__ import annotations

from jupyter_serving.features.catalog import FeatureTableInfo
from jupyter_serving.features.client import FeatureEngineeringClient
from jupyter_serving.features.spec import FeatureLookup, FeatureSpec
from jupyter_serving.features.training import TrainingSet

__all__ = ["FeatureEngineeringClient", "FeatureLookup", "FeatureSpec", "FeatureTableInfo", "TrainingSet"]
