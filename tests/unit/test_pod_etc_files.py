"""The pod's /etc/hosts and /etc/resolv.conf from the image's and the host's (default flavor)."""

from __future__ import annotations

from pathlib import Path

from rktcfg.stage1.default import _add_hostname, host_resolv_conf


def test_the_hostname_is_added_to_an_images_hosts_file_that_lacks_it(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.5 db  # podhost-old\n")
    _add_hostname(str(hosts), "podhost")
    assert hosts.read_text().endswith("# podhost-old\n127.0.1.1\tpodhost\n")
    _add_hostname(str(hosts), "podhost")  # there now: nothing added
    assert hosts.read_text().count("podhost\n") == 1


def test_an_images_hosts_file_naming_the_hostname_or_a_symlink_is_kept(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n192.0.2.7\tother podhost")  # no final newline
    _add_hostname(str(hosts), "podhost")
    assert hosts.read_text() == "127.0.0.1 localhost\n192.0.2.7\tother podhost"
    _add_hostname(str(hosts), "other-name")
    assert hosts.read_text().endswith("podhost\n127.0.1.1\tother-name\n")
    link = tmp_path / "link"
    link.symlink_to(hosts)
    before = hosts.read_text()
    _add_hostname(str(link), "third")
    assert hosts.read_text() == before


def test_a_host_with_the_resolved_stub_gives_pods_the_upstream_servers(tmp_path: Path) -> None:
    stub, upstream = tmp_path / "resolv.conf", tmp_path / "upstream.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    upstream.write_text("nameserver 192.0.2.1\n")
    paths = {"path": str(stub), "upstream": str(upstream)}
    assert host_resolv_conf(own_netns=True, **paths) == "nameserver 192.0.2.1\n"
    assert host_resolv_conf(own_netns=False, **paths) == stub.read_text()  # --net host
    stub.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.9\n")  # one reachable server
    assert host_resolv_conf(own_netns=True, **paths) == stub.read_text()
    upstream.unlink()
    stub.write_text("nameserver 127.0.0.53\n")
    assert host_resolv_conf(own_netns=True, **paths) == stub.read_text()  # nothing better
    stub.unlink()
    assert host_resolv_conf(own_netns=True, **paths) == ""
