"""appc naming rules, shared by configuration, manifests, pods and networks.

The spec's regexes, which are stricter than the Go reference code (it accepts ``a..b`` and
``a--b``); errors say which rule a name broke. Pure.
"""

from __future__ import annotations

import re

#: Image names, label, annotation and isolator names: ``example.com/reduce-worker``.
AC_IDENTIFIER = re.compile(r"^[a-z0-9]+([-._~/][a-z0-9]+)*$")
#: App, volume, mount point, port and network names: DNS-label-like, ``my-app``.
AC_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
#: A full image ID: ``sha512-`` and 128 lowercase hex digits.
IMAGE_ID = re.compile(r"^sha512-[0-9a-f]{128}$")

#: The annotations apply puts on the pods it makes: which pod file made them, from where, in
#: which apply set, from which canonical spec (here, not in the planner: `list` and `status`
#: read them without importing it).
ANNOTATION_NAME = "rktcfg.dev/name"
ANNOTATION_SOURCE = "rktcfg.dev/source"
ANNOTATION_SET = "rktcfg.dev/apply-set"
ANNOTATION_HASH = "rktcfg.dev/spec-hash"

AC_IDENTIFIER_RULE = "must be an AC Identifier (lowercase, like example.com/my-app)"
AC_NAME_RULE = "must be an AC Name (lowercase letters, digits and single dashes, like my-app)"
