"""``rktcfg list``: the pods, one row per app."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.output import add_output_option

    parser.description = (
        "List pods: UUID NAME SET APP IMAGE STATE CREATED STARTED NETWORKS (SET: the apply set "
        "that manages the pod, - for pods run by hand)."
    )
    parser.add_argument("--full", action="store_true", help="full UUIDs and absolute times")
    parser.add_argument("--no-legend", action="store_true", help="omit the header line")
    add_output_option(parser)


def _when(ns: int | None, full: bool, now: int) -> str:
    import time

    from rktcfg.cli.output import ago

    if not ns:
        return "-"
    if full:
        return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(ns / 1e9))
    return ago(ns, now)


def run(args: argparse.Namespace, ctx: Context) -> int:
    import time

    from rktcfg.cli.output import emit, table
    from rktcfg.pods import Pods

    pods = Pods(ctx.data_dir())
    statuses = pods.statuses()
    now = time.time_ns()
    rows = []
    for status in statuses:
        apps = status["apps"] or [{"name": "-", "image": "-"}]
        for index, app in enumerate(apps):
            first = index == 0
            rows.append(
                [
                    (status["uuid"] if args.full else status["uuid"][:8]) if first else "",
                    (status["name"] or "-") if first else "",
                    (status.get("apply_set") or "-") if first else "",
                    app["name"],
                    app.get("image") or "-",
                    status["state"] if first else "",
                    _when(status["created_at"], args.full, now) if first else "",
                    _when(status["started_at"], args.full, now) if first else "",
                    _networks(status) if first else "",
                ]
            )
    headers = ["UUID", "NAME", "SET", "APP", "IMAGE", "STATE", "CREATED", "STARTED", "NETWORKS"]
    if args.output == "text" and ctx.out.isatty():
        from rich.console import Console
        from rich.table import Table

        rich_table = Table(*headers, show_header=not args.no_legend, box=None)
        for row in rows:
            rich_table.add_row(*row)
        Console(file=ctx.out).print(rich_table)
        return 0
    emit(ctx, statuses, lambda: table(headers, rows, legend=not args.no_legend))
    return 0


def _networks(status: dict[str, Any]) -> str:
    """``default:ip4=172.16.28.5,backend:ip4=...``; "-" for none, and unless the networks
    are ready (once torn down or failed, the address may be another pod's)."""
    if status.get("network_state") != "ready":
        return "-"
    return ",".join(f"{n['name']}:ip4={n['ip']}" for n in status["networks"] if n["ip"]) or "-"
