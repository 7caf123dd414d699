"""The domain model every layer shares: endpoint configs, naming rules and defaults, states.

api, control, backends and the notebook side import from here; nothing here imports them.
"""
