"""The data plane: routing tables, the invocation path (route -> deployment -> capture -> reply), metrics."""
