"""Stage 1: the pod supervisor and what it leaves in the pod directory."""
