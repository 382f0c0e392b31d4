"""Running the real tritonserver: its install, one process, access flags, supervision."""
