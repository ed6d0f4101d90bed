"""The stores that own the data directory: images, rendered trees, pods, leases.

No other module builds a path inside the data directory.
"""
