"""The data plane: worker processes, replica sets, routing, metrics."""
