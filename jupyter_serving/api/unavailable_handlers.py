"""Routes of Databricks features a local server does not have, answered with errors that say so
(provisioned throughput, external functions) rather than a bare 404.
"""

from __future__ import annotations

from tornado import web

from jupyter_serving.api.handlers import API, NAME, ServingHandler
from jupyter_serving.errors import (
    FeatureDisabled,
)


def _no_provisioned_throughput() -> FeatureDisabled:
    return FeatureDisabled(
        "Provisioned-throughput (foundation model) endpoints are not available on this server: it "
        "serves MLflow models from the registry. Create an endpoint with POST /api/2.0/serving-endpoints."
    )


class ProvisionedThroughputHandler(ServingHandler):
    @web.authenticated
    def post(self) -> None:
        raise _no_provisioned_throughput()


class ProvisionedThroughputConfigHandler(ServingHandler):
    @web.authenticated
    def put(self, name: str) -> None:
        raise _no_provisioned_throughput()


class ExternalFunctionHandler(ServingHandler):
    @web.authenticated
    def post(self) -> None:
        raise FeatureDisabled(
            "External functions (HTTP requests through Unity Catalog connections) are not available on "
            "this server."
        )


routes: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"{API}/pt/?", ProvisionedThroughputHandler),
    (rf"{API}/pt/{NAME}/config/?", ProvisionedThroughputConfigHandler),
    (r"/api/2\.0/external-function/?", ExternalFunctionHandler),
]
