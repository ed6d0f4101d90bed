"""Version facts, importable without cost (``rktcfg --version`` reads only this module)."""

__version__ = "0.1.0"

#: The App Container spec version rktcfg writes and validates against.
APPC_SPEC_VERSION = "0.8.11"
#: The oldest appc spec version whose images rktcfg still reads (rkt 0.14 shipped 0.7.4).
APPC_SPEC_READS = "0.7.4"
#: The API service's wire version (rkt's v1alpha shape).
API_VERSION = "v1alpha"
#: The stage1 flavor pods get when neither the pod nor stage1.d names one.
BUILTIN_DEFAULT_FLAVOR = "default"
#: Flavors rktcfg knows; each one's stage1 image is versioned with rktcfg itself.
FLAVORS = ("fly", "default", "kvm")
#: Name of a flavor's stage1 image when stage1.d does not set one.
STAGE1_NAME_PREFIX = "rktcfg.dev/stage1-"
