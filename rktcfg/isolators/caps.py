"""Linux capabilities by name: the kernel's numbering and appc's default set.

``normalize`` turns what a user writes (``net_admin``, ``NET_ADMIN``, ``CAP_NET_ADMIN``)
into the canonical ``CAP_NET_ADMIN``; ``mask`` turns names into the bitmask ``capset(2)``
and ``prctl(PR_CAPBSET_DROP)`` work with. Standard library only, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

#: Every capability of Linux 5.9 and later (``include/uapi/linux/capability.h``).
CAPABILITIES: Mapping[str, int] = MappingProxyType(
    {
        "CAP_CHOWN": 0,
        "CAP_DAC_OVERRIDE": 1,
        "CAP_DAC_READ_SEARCH": 2,
        "CAP_FOWNER": 3,
        "CAP_FSETID": 4,
        "CAP_KILL": 5,
        "CAP_SETGID": 6,
        "CAP_SETUID": 7,
        "CAP_SETPCAP": 8,
        "CAP_LINUX_IMMUTABLE": 9,
        "CAP_NET_BIND_SERVICE": 10,
        "CAP_NET_BROADCAST": 11,
        "CAP_NET_ADMIN": 12,
        "CAP_NET_RAW": 13,
        "CAP_IPC_LOCK": 14,
        "CAP_IPC_OWNER": 15,
        "CAP_SYS_MODULE": 16,
        "CAP_SYS_RAWIO": 17,
        "CAP_SYS_CHROOT": 18,
        "CAP_SYS_PTRACE": 19,
        "CAP_SYS_PACCT": 20,
        "CAP_SYS_ADMIN": 21,
        "CAP_SYS_BOOT": 22,
        "CAP_SYS_NICE": 23,
        "CAP_SYS_RESOURCE": 24,
        "CAP_SYS_TIME": 25,
        "CAP_SYS_TTY_CONFIG": 26,
        "CAP_MKNOD": 27,
        "CAP_LEASE": 28,
        "CAP_AUDIT_WRITE": 29,
        "CAP_AUDIT_CONTROL": 30,
        "CAP_SETFCAP": 31,
        "CAP_MAC_OVERRIDE": 32,
        "CAP_MAC_ADMIN": 33,
        "CAP_SYSLOG": 34,
        "CAP_WAKE_ALARM": 35,
        "CAP_BLOCK_SUSPEND": 36,
        "CAP_AUDIT_READ": 37,
        "CAP_PERFMON": 38,
        "CAP_BPF": 39,
        "CAP_CHECKPOINT_RESTORE": 40,
    }
)

#: The highest capability number this table knows.
LAST_CAP = max(CAPABILITIES.values())

#: appc's default set for an app without a capabilities isolator (``spec/ace.md``), in the
#: spec's order.
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETFCAP",
    "CAP_SYS_CHROOT",
)


def normalize(name: str) -> str:
    """The canonical ``CAP_`` name: ``net_admin``, ``NET_ADMIN`` -> ``CAP_NET_ADMIN``."""
    if not isinstance(name, str):
        raise ValueError(f"must be a capability name like CAP_NET_ADMIN (got {name!r})")
    text = name.strip().upper()
    canonical = text if text.startswith("CAP_") else f"CAP_{text}"
    if canonical not in CAPABILITIES:
        raise ValueError(
            f"must be a Linux capability name like CAP_NET_ADMIN or net_admin (got {name!r})"
        )
    return canonical


def mask(names: Iterable[str]) -> int:
    """The bitmask of ``names`` (each normalized): bit N set for capability number N."""
    bits = 0
    for name in names:
        bits |= 1 << CAPABILITIES[normalize(name)]
    return bits
