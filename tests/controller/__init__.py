"""Controller tests: the long-running process against the sandbox cluster."""
