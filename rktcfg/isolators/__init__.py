"""appc isolators, Kubernetes-style quantities, and the cgroup drivers that enforce them."""
