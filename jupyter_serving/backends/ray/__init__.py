"""The Ray backend: served entities as Ray Serve applications (`backend = ray`, extra `[ray]`)."""
