"""Control-plane side of shadow traffic: set, read and stop an endpoint's mirror.

The config is stored in the endpoint's record (`EndpointRecord.shadow`), so it survives a
restart (`Endpoint.__init__` opens its lane with it); the running `Mirror` (the data plane's, in
the endpoint's lane) is swapped in one assignment, so a request sees either the old shadow or the
new one. No rollout is involved: the shadow entity is already deployed by the endpoint's config.
"""

from __future__ import annotations

from typing import Any

from jupyter_serving.control.endpoint_settings import save
from jupyter_serving.control.manager import EndpointManager
from jupyter_serving.dataplane.shadow import parse_shadow
from jupyter_serving.errors import ResourceDoesNotExist


def get_shadow(manager: EndpointManager, name: str) -> dict[str, Any]:
    endpoint = manager.get(name)
    if endpoint.shadow is None:
        raise ResourceDoesNotExist(f"Endpoint '{name}' has no shadow traffic configured.")
    return endpoint.shadow.config.to_json()


def put_shadow(manager: EndpointManager, name: str, body: Any) -> dict[str, Any]:
    endpoint = manager.get(name)
    config = parse_shadow(body, endpoint.record.config, name)
    endpoint.record.shadow = config.to_json()
    save(manager, endpoint)
    endpoint.lane.mirror(config)  # the data plane's mirror, swapped in one assignment
    return config.to_json()


def delete_shadow(manager: EndpointManager, name: str) -> None:
    """Stop mirroring (idempotent): queued mirrored requests are dropped and counted."""
    endpoint = manager.get(name)
    endpoint.lane.mirror(None)
    if endpoint.record.shadow is not None:
        endpoint.record.shadow = None
        save(manager, endpoint)
