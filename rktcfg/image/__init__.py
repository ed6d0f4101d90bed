"""Image formats: ACI and OCI archives, appc manifests, safe tar extraction, fetch, build."""
