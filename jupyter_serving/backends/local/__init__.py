"""The local backend: subprocess replicas on this machine (warm pools, Unix sockets, GPUs, supervision)."""
