"""Desired state and the control plane: endpoint store, model registry lookups, rollouts."""
