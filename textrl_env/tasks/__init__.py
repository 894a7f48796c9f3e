"""Built-in tasks: each a single env class and its native vector twin, registered as ``textrl/...``."""
