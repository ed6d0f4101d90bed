"""Resolving an app's isolation from layers (rktcfg.isolators.resolve) and capability names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rktcfg.errors import InputError
from rktcfg.isolators import caps
from rktcfg.isolators.resolve import (
    Isolation,
    IsolatorError,
    Limits,
    cli_isolators,
    resolve,
)

WHERE = ["image example.com/x", "pod file", "command line"]
DEFAULTS = {"cpu_millis": 100, "memory_bytes": 64 * 2**20, "pids": 50}


def iso(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "value": value}


def cpu(limit: str | None = None, request: str | None = None) -> dict[str, Any]:
    value = {k: v for k, v in (("limit", limit), ("request", request)) if v is not None}
    return iso("resource/cpu", value)


def memory(limit: str | None = None, request: str | None = None) -> dict[str, Any]:
    value = {k: v for k, v in (("limit", limit), ("request", request)) if v is not None}
    return iso("resource/memory", value)


def retain(*names: str) -> dict[str, Any]:
    return iso("os/linux/capabilities-retain-set", {"set": list(names)})


def remove(*names: str) -> dict[str, Any]:
    return iso("os/linux/capabilities-remove-set", {"set": list(names)})


def three(
    image: list[dict[str, Any]] | None = None,
    pod: list[dict[str, Any]] | None = None,
    cli: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> Isolation:
    return resolve([image or [], pod or [], cli or []], where=WHERE, **kwargs)


def problems(exc: pytest.ExceptionInfo[IsolatorError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


# caps ----------------------------------------------------------------------------------------


def test_capability_table() -> None:
    assert caps.CAPABILITIES["CAP_CHOWN"] == 0
    assert caps.CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert caps.CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(caps.CAPABILITIES.values()) == list(range(41))
    assert len(caps.DEFAULT_CAPS) == 14 and set(caps.DEFAULT_CAPS) <= set(caps.CAPABILITIES)


@pytest.mark.parametrize("name", ["CAP_NET_ADMIN", "net_admin", "NET_ADMIN", " Cap_Net_Admin "])
def test_normalize(name: str) -> None:
    assert caps.normalize(name) == "CAP_NET_ADMIN"


@pytest.mark.parametrize("name", ["CAP_FLY", "", "CAP_", "net admin"])
def test_normalize_unknown(name: str) -> None:
    with pytest.raises(ValueError, match=r"must be a Linux capability name .*got"):
        caps.normalize(name)


def test_mask() -> None:
    assert caps.mask([]) == 0
    assert caps.mask(["chown", "CAP_KILL"]) == 0b100001
    assert caps.mask(["CAP_CHECKPOINT_RESTORE", "checkpoint_restore"]) == 1 << 40
    with pytest.raises(ValueError):
        caps.mask(["CAP_NOPE"])


# precedence ----------------------------------------------------------------------------------


def test_nothing_means_defaults_of_appc() -> None:
    isolation = three()
    assert isolation.limits == Limits()
    assert isolation.capabilities == tuple(sorted(caps.DEFAULT_CAPS))
    assert isolation.no_new_privileges is False
    assert isolation.ignored == ()


def test_config_defaults_are_the_lowest_layer() -> None:
    limits = three(defaults=DEFAULTS).limits
    assert limits == Limits(
        cpu_limit_millis=100,
        cpu_request_millis=100,
        memory_limit_bytes=64 * 2**20,
        memory_request_bytes=64 * 2**20,
        pids=50,
    )
    none = three(defaults={"cpu_millis": None, "memory_bytes": None, "pids": None}).limits
    assert none == Limits()


def test_each_higher_layer_wins_per_field() -> None:
    limits = three(
        image=[cpu("2"), memory("1Gi"), iso("os/linux/cpu-shares", 512)],
        pod=[memory("256Mi"), iso("rktcfg/pids", 30), iso("os/linux/oom-score-adj", 100)],
        cli=[cpu("500m")],
        defaults=DEFAULTS,
    ).limits
    assert limits == Limits(
        cpu_limit_millis=500,  # command line
        cpu_request_millis=500,
        memory_limit_bytes=256 * 2**20,  # pod file
        memory_request_bytes=256 * 2**20,
        cpu_shares=512,  # image
        oom_score_adj=100,  # pod file
        pids=30,  # pod file over isolators.d
    )


def test_last_of_a_name_in_a_layer_wins() -> None:
    limits = three(image=[memory("1G"), memory("2G"), iso("rktcfg/pids", 5), iso("rktcfg/pids", 7)])
    assert limits.limits.memory_limit_bytes == 2 * 10**9
    assert limits.limits.pids == 7


def test_request_defaults_to_limit_and_request_alone_sets_only_request() -> None:
    limits = three(image=[cpu("2", "1")], pod=[cpu(request="250m")]).limits
    assert (limits.cpu_limit_millis, limits.cpu_request_millis) == (2000, 250)
    limits = three(image=[cpu("2", "1")], pod=[cpu(limit="1500m")]).limits
    assert (limits.cpu_limit_millis, limits.cpu_request_millis) == (1500, 1500)
    limits = three(pod=[memory(request="100M")], defaults=DEFAULTS).limits
    assert (limits.memory_limit_bytes, limits.memory_request_bytes) == (64 * 2**20, 10**8)


def test_no_new_privileges() -> None:
    assert three(image=[iso("os/linux/no-new-privileges", True)]).no_new_privileges is True
    assert (
        three(
            image=[iso("os/linux/no-new-privileges", True)],
            cli=[iso("os/linux/no-new-privileges", False)],
        ).no_new_privileges
        is False
    )


def test_quantities_in_base_units() -> None:
    limits = three(image=[cpu("1.5"), memory("42Mi")], pod=[cpu(request="0.1")]).limits
    assert limits.cpu_limit_millis == 1500 and limits.cpu_request_millis == 100
    assert limits.memory_limit_bytes == 44040192
    assert three(image=[memory("5K")]).limits.memory_limit_bytes == 5000  # K read as k
    assert three(image=[memory("4e6")]).limits.memory_limit_bytes == 4_000_000
    assert three(image=[cpu("250000u")]).limits.cpu_limit_millis == 250


# capabilities --------------------------------------------------------------------------------


def test_retain_set_is_exactly_the_set() -> None:
    isolation = three(image=[retain("CAP_NET_ADMIN", "chown")])
    assert isolation.capabilities == ("CAP_CHOWN", "CAP_NET_ADMIN")


def test_remove_set_is_taken_from_the_default() -> None:
    isolation = three(image=[remove("CAP_KILL", "CAP_SYS_ADMIN")])  # SYS_ADMIN: not in it
    assert isolation.capabilities == tuple(sorted(set(caps.DEFAULT_CAPS) - {"CAP_KILL"}))


def test_a_higher_caps_layer_replaces_the_lower_decision() -> None:
    isolation = three(image=[retain("CAP_NET_ADMIN")], pod=[remove("CAP_MKNOD")])
    assert "CAP_NET_ADMIN" not in isolation.capabilities
    assert isolation.capabilities == tuple(sorted(set(caps.DEFAULT_CAPS) - {"CAP_MKNOD"}))
    isolation = three(image=[remove("CAP_MKNOD")], cli=[retain("SYS_TIME")])
    assert isolation.capabilities == ("CAP_SYS_TIME",)
    # a layer without a caps isolator keeps what the lower ones decided
    assert three(image=[retain("CAP_KILL")], pod=[cpu("1")]).capabilities == ("CAP_KILL",)


def test_retain_and_remove_in_one_layer() -> None:
    with pytest.raises(IsolatorError) as exc:
        three(image=[retain("CAP_KILL")], pod=[retain("CAP_KILL"), remove("CAP_CHOWN")])
    assert problems(exc) == [
        "pod file: os/linux/capabilities-remove-set: must not be combined with "
        "os/linux/capabilities-retain-set in one layer (got a table)"
    ]


def test_retain_and_remove_in_different_layers_is_fine() -> None:
    assert three(image=[retain("CAP_KILL")], pod=[remove("CAP_KILL")]).capabilities == tuple(
        sorted(set(caps.DEFAULT_CAPS) - {"CAP_KILL"})
    )


def test_unknown_and_empty_caps() -> None:
    with pytest.raises(IsolatorError) as exc:
        three(image=[retain("CAP_FLY", "CAP_KILL", "teleport")], pod=[remove()])
    assert problems(exc) == [
        "image example.com/x: os/linux/capabilities-retain-set.set: must hold Linux capability "
        'names (got "CAP_FLY")',
        "image example.com/x: os/linux/capabilities-retain-set.set: must hold Linux capability "
        'names (got "teleport")',
        "pod file: os/linux/capabilities-remove-set.set: must be a non-empty list of "
        "capability names (got a list)",
    ]


# ignored and strict --------------------------------------------------------------------------


def test_not_enforced_and_unknown_are_listed_once() -> None:
    isolation = three(
        image=[
            iso("resource/block-bandwidth", {"default": True, "limit": "10M"}),
            iso("os/linux/seccomp-remove-set", {"set": ["reboot"]}),
        ],
        pod=[iso("example.com/turbo", 1), iso("resource/block-bandwidth", {"limit": "1M"})],
        cli=[iso("os/unix/sysctl", {"net.ipv4.ip_forward": "1"})],
    )
    assert isolation.ignored == (
        "resource/block-bandwidth (not supported)",
        "os/linux/seccomp-remove-set (not supported)",
        "example.com/turbo (unknown isolator)",
        "os/unix/sysctl (not supported)",
    )


def test_strict_refuses_every_ignored_isolator() -> None:
    with pytest.raises(IsolatorError) as exc:
        three(
            image=[iso("resource/block-iops", {"default": True, "limit": "10"})],
            pod=[iso("example.com/turbo", 1), iso("os/linux/selinux-context", {})],
            strict=True,
        )
    assert problems(exc) == [
        "image example.com/x: resource/block-iops: is refused in strict mode: rktcfg does not "
        "enforce it (not supported)",
        "pod file: example.com/turbo: is refused in strict mode: rktcfg does not enforce it "
        "(unknown isolator)",
        "pod file: os/linux/selinux-context: is refused in strict mode: rktcfg does not "
        "enforce it (not supported)",
    ]
    assert str(exc.value).startswith("3 problems in isolators:\n")


def test_strict_without_ignored_isolators_resolves() -> None:
    assert three(image=[cpu("1")], strict=True).limits.cpu_limit_millis == 1000


# bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("isolator", "message"),
    [
        (
            memory("16m"),
            "resource/memory.limit: must be at least 4096 bytes, like 128M or 1Gi "
            '(m means thousandths: did you mean M?) (got "16m")',
        ),
        (
            memory("4095"),
            'resource/memory.limit: must be at least 4096 bytes, like 128M or 1Gi (got "4095")',
        ),
        (
            memory("-1Gi"),
            "resource/memory.limit: must be a memory quantity like 128M or 1Gi, not negative "
            '(got "-1Gi")',
        ),
        (
            cpu("-500m"),
            'resource/cpu.limit: must be a CPU quantity like 500m or 2, not negative (got "-500m")',
        ),
        (cpu("lots"), 'resource/cpu.limit: must be a CPU quantity like 500m or 2 (got "lots")'),
        (
            iso("resource/cpu", {"default": True, "limit": "1"}),
            "resource/cpu.default: must be false or absent (got true)",
        ),
        (
            cpu("1", "2"),
            'resource/cpu.request: must not be more than the limit (got "2")',
        ),
        (
            iso("resource/memory", "1G"),
            'resource/memory: must be a table of limit and request (got "1G")',
        ),
        (
            iso("os/linux/oom-score-adj", 1001),
            "os/linux/oom-score-adj: must be an integer from -1000 to 1000 (got 1001)",
        ),
        (
            iso("os/linux/oom-score-adj", "5"),
            'os/linux/oom-score-adj: must be an integer from -1000 to 1000 (got "5")',
        ),
        (
            iso("os/linux/cpu-shares", 1),
            "os/linux/cpu-shares: must be an integer from 2 to 262144 (got 1)",
        ),
        (iso("rktcfg/pids", 0), "rktcfg/pids: must be an integer of at least 1 (got 0)"),
        (iso("rktcfg/pids", True), "rktcfg/pids: must be an integer of at least 1 (got true)"),
        (
            iso("os/linux/no-new-privileges", "yes"),
            'os/linux/no-new-privileges: must be true or false (got "yes")',
        ),
        (
            iso("os/linux/capabilities-retain-set", ["CAP_KILL"]),
            "os/linux/capabilities-retain-set.set: must be a non-empty list of capability names "
            "(got null)",
        ),
    ],
)
def test_bad_values_name_layer_isolator_and_value(isolator: dict[str, Any], message: str) -> None:
    with pytest.raises(IsolatorError) as exc:
        three(image=[isolator])
    assert problems(exc) == [f"image example.com/x: {message}"]
    assert str(exc.value) == f"image example.com/x: {message}"
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, InputError)


def test_every_bad_value_in_every_layer_is_reported_at_once() -> None:
    with pytest.raises(IsolatorError) as exc:
        three(
            image=[memory("16m"), iso("os/linux/cpu-shares", 0)],
            pod=[iso("rktcfg/pids", -1)],
            cli=[cpu("0")],
        )
    assert len(exc.value.problems) == 4
    assert {p.file for p in exc.value.problems} == set(WHERE)


def test_malformed_isolator_entries() -> None:
    with pytest.raises(IsolatorError) as exc:
        three(image=[{"value": 1}, "resource/cpu"])  # type: ignore[list-item]
    assert problems(exc) == [
        "image example.com/x: isolators[0]: must be {name, value} (got a table)",
        'image example.com/x: isolators[1]: must be {name, value} (got "resource/cpu")',
    ]


def test_layer_names() -> None:
    with pytest.raises(IsolatorError, match=r"^layers\[1\]: rktcfg/pids"):
        resolve([[], [iso("rktcfg/pids", 0)]])
    with pytest.raises(ValueError, match="where: must name each of the 2 layers"):
        resolve([[], []], where=["image"])
    with pytest.raises(ValueError, match="defaults: unknown keys"):
        resolve([], defaults={"cpu": 1})


def test_bad_defaults_are_named_isolators_d() -> None:
    with pytest.raises(IsolatorError, match=r"^isolators\.d: resource/memory\.limit"):
        resolve([], defaults={"memory_bytes": 100})


# JSON round trip -----------------------------------------------------------------------------


def test_isolation_round_trips_through_json() -> None:
    isolation = three(
        image=[cpu("2", "1"), iso("resource/block-iops", {})],
        pod=[retain("NET_ADMIN"), iso("os/linux/no-new-privileges", True)],
        defaults=DEFAULTS,
    )
    data = json.loads(json.dumps(isolation.as_dict()))
    assert data == {
        "limits": {
            "cpu_limit_millis": 2000,
            "cpu_request_millis": 1000,
            "memory_limit_bytes": 64 * 2**20,
            "memory_request_bytes": 64 * 2**20,
            "cpu_shares": None,
            "oom_score_adj": None,
            "pids": 50,
        },
        "capabilities": ["CAP_NET_ADMIN"],
        "no_new_privileges": True,
        "ignored": ["resource/block-iops (not supported)"],
    }
    assert Isolation.from_dict(data) == isolation
    assert Limits.from_dict(isolation.limits.as_dict()) == isolation.limits


@pytest.mark.parametrize(
    "data",
    [
        {"limits": {"pids": "5"}},
        {"limits": {"pids": True}},
        {"capabilities": ["CAP_FLY"]},
        {"capabilities": "CAP_KILL"},
        {"no_new_privileges": 1},
        {"ignored": [1]},
    ],
)
def test_isolation_from_bad_dict(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Isolation.from_dict(data)


# command line --------------------------------------------------------------------------------


def test_cli_isolators() -> None:
    assert cli_isolators(None, None, None, None) == []
    assert cli_isolators("500m", "42Mi", "net_admin,CAP_CHOWN, kill", None, "512", "-17") == [
        iso("resource/cpu", {"request": "500m", "limit": "500m"}),
        iso("resource/memory", {"request": "42Mi", "limit": "42Mi"}),
        retain("CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"),
        iso("os/linux/cpu-shares", 512),
        iso("os/linux/oom-score-adj", -17),
    ]
    assert cli_isolators(None, None, None, "MKNOD") == [remove("CAP_MKNOD")]


def test_cli_overrides_the_image_like_rkt() -> None:
    isolation = resolve(
        [[memory("1G"), retain("CAP_SYS_ADMIN")], cli_isolators("1", "42Mi", None, "KILL")],
        where=["image example.com/x", "command line"],
    )
    assert isolation.limits.memory_limit_bytes == isolation.limits.memory_request_bytes == 44040192
    assert isolation.limits.cpu_limit_millis == isolation.limits.cpu_request_millis == 1000
    assert isolation.capabilities == tuple(sorted(set(caps.DEFAULT_CAPS) - {"CAP_KILL"}))


def test_cli_both_caps_flags() -> None:
    with pytest.raises(IsolatorError) as exc:
        cli_isolators(None, None, "NET_ADMIN", "KILL")
    assert problems(exc) == ['--caps-remove: must not be combined with --caps-retain (got "KILL")']


def test_cli_bad_values_fail_early_all_at_once() -> None:
    with pytest.raises(IsolatorError) as exc:
        cli_isolators("fast", "16m", "CAP_FLY,KILL", None, "1", "2000")
    assert problems(exc) == [
        '--caps-retain: must hold Linux capability names like NET_ADMIN (got "CAP_FLY")',
        '--cpu: must be a CPU quantity like 500m or 2 (got "fast")',
        '--cpu-shares: must be an integer from 2 to 262144 (got "1")',
        "--memory: must be at least 4096 bytes, like 128M or 1Gi (m means thousandths: did you "
        'mean M?) (got "16m")',
        '--oom-score-adj: must be an integer from -1000 to 1000 (got "2000")',
    ]
    with pytest.raises(IsolatorError, match="--caps-remove: must be comma-separated"):
        cli_isolators(None, None, None, " , ")


# properties ----------------------------------------------------------------------------------

NAMES = [
    "resource/cpu",
    "resource/memory",
    "os/linux/cpu-shares",
    "os/linux/oom-score-adj",
    "rktcfg/pids",
    "os/linux/no-new-privileges",
    "os/linux/capabilities-retain-set",
    "os/linux/capabilities-remove-set",
    "resource/block-iops",
    "example.com/other",
]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.sampled_from(["500m", "1Gi", "16m", "-1", "CAP_KILL", "net_admin", "x", ""]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["limit", "request", "default", "set"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)
ISOLATOR = st.fixed_dictionaries({"name": st.sampled_from(NAMES), "value": JSON})
LAYERS = st.lists(st.lists(ISOLATOR, max_size=4), max_size=4)


@given(LAYERS, st.booleans())
def test_any_layers_give_an_isolation_or_an_isolator_error(
    layers: list[list[dict[str, Any]]], strict: bool
) -> None:
    try:
        isolation = resolve(layers, strict=strict)
    except IsolatorError as exc:
        assert exc.problems and all(p.file and p.field for p in exc.problems)
        return
    assert Isolation.from_dict(json.loads(json.dumps(isolation.as_dict()))) == isolation
    assert all(c in caps.CAPABILITIES for c in isolation.capabilities)


@given(LAYERS, st.integers(4096, 2**40), st.integers(1, 10**6))
def test_a_last_layer_wins(layers: list[list[dict[str, Any]]], memory: int, pids: int) -> None:
    top = [iso("resource/memory", {"limit": memory}), iso("rktcfg/pids", pids), retain("KILL")]
    try:
        isolation = resolve([*layers, top])
    except IsolatorError:
        return  # a lower layer was bad; the problem is reported, not hidden by the top layer
    assert isolation.limits.memory_limit_bytes == isolation.limits.memory_request_bytes == memory
    assert isolation.limits.pids == pids
    assert isolation.capabilities == ("CAP_KILL",)
