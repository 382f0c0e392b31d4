"""Code that runs inside tritonserver's python-backend steps (no torch, no pb_utils here)."""
