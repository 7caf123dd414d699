"""Fixture model: answers each row with the version of the package it names, as its worker sees it."""

import mlflow


class Versions(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        from pkg_versions import version_of  # shipped through code_paths, on the path once loaded

        return [version_of(name) for name in model_input["package"]]


mlflow.models.set_model(Versions())
