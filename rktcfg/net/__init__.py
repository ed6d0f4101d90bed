"""Pod networks for the default flavor: network namespaces, veths, bridges, addresses, NAT.

Modules:

- :mod:`rktcfg.net.ipam` -- host-local address leases, one file per address, under a lock.
- :mod:`rktcfg.net.netlink` -- the rtnetlink calls (pyroute2), in the host's or a pod's netns.
- :mod:`rktcfg.net.nft` -- the ``ip rktcfg`` nftables table: masquerade and published ports.
- :mod:`rktcfg.net.podnet` -- what a pod gets: ``create_netns``, ``setup`` and ``teardown``,
  recorded in ``<pod dir>/networks.json`` before anything is made.

Nothing is imported here: pyroute2 costs ~90 ms, and only the commands that build networks
should pay for it.
"""
