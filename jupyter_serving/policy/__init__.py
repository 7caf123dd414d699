"""Pure decisions with no IO: autoscaling and GPU placement, table-tested, shared by every backend."""
