"""`jupyter_serving.widgets`: the ipywidgets forms (create/edit an endpoint, monitor one)."""

from jupyter_serving.notebook.widgets import EndpointForm, EndpointMonitor

__all__ = ["EndpointForm", "EndpointMonitor"]
