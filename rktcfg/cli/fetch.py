"""``rktcfg fetch IMAGE...``: bring images into the store and print their IDs."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from rktcfg.cli.context import Context

DESCRIPTION = """\
Fetch images into the store and print each one's ID. IMAGE is
  a path or file:// URL of an ACI (plain tar, gzip, bzip2 or xz, detected by content),
  oci:PATH[#REF] (an OCI image layout directory or tar) or docker-archive:PATH[#REF],
  an http:// or https:// URL of an ACI, or
  an appc name, name[:version][,label=value...], found by appc meta discovery.
An image already in the store is reused, not imported twice. Its dependencies are fetched
too, and its tree is rendered (--no-render skips both); if that fails, the images this
fetch added are removed again. rktcfg cannot verify
signatures yet: network fetches need --insecure-options=image (plain http also http)."""


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.output import add_output_option

    parser.description = DESCRIPTION
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="path, URL or appc name")
    parser.add_argument(
        "--pull-policy",
        choices=("new", "update", "never"),
        default="update",
        help="new: store first; update: ask the remote (default); never: store only",
    )
    parser.add_argument(
        "--insecure-options",
        default="none",
        metavar="OPTS",
        help="comma-separated: image (no signature check), http (allow plain http), all-fetch",
    )
    parser.add_argument(
        "--max-size",
        default="8Gi",
        metavar="SIZE",
        help="refuse images larger than this uncompressed (default 8Gi; a quantity like 512Mi)",
    )
    parser.add_argument(
        "--no-render",
        action="store_true",
        help="only store the image; do not fetch its dependencies and render its tree now",
    )
    add_output_option(parser)


class ProgressBars:
    """A rich progress bar per download, drawn on stderr (stdout carries the image IDs)."""

    def __init__(self, ctx: Context) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.bars = Progress(
            "{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
            console=Console(file=ctx.err),
        )

    def __call__(self, url: str) -> Callable[[int, int | None], None]:
        self.bars.start()
        task = self.bars.add_task(url.rsplit("/", 1)[-1][:40], total=None)

        def update(done: int, total: int | None) -> None:
            self.bars.update(task, completed=done, total=total)

        return update

    def close(self) -> None:
        self.bars.stop()


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit
    from rktcfg.errors import UsageError
    from rktcfg.image.fetch import FetchOptions, fetch_and_render, fetch_image
    from rktcfg.isolators.quantity import QuantityError, parse_memory_bytes

    insecure = frozenset(o.strip() for o in args.insecure_options.split(",") if o.strip())
    try:
        max_bytes = parse_memory_bytes(args.max_size)
    except QuantityError as exc:
        raise UsageError(f"--max-size: {exc} (got {args.max_size!r})") from None
    bars = ProgressBars(ctx) if args.output == "text" and ctx.err.isatty() else None
    options = FetchOptions(
        policy=args.pull_policy,
        insecure=insecure - {"none"},
        progress=bars,
        max_bytes=max_bytes,
    )
    results = []
    fetch = fetch_image if args.no_render else fetch_and_render
    with ctx.image_store() as store:
        for ref in args.images:
            try:
                result = fetch(store, ref, options)
            finally:
                if bars is not None:
                    bars.close()
            results.append(
                {
                    "image": ref,
                    "id": result.record.id,
                    "name": result.record.name_version,
                    "new": result.new,
                }
            )
    for warning in options.warnings:
        ctx.err.write(f"rktcfg: warning: {warning}\n")
    emit(ctx, results, lambda: "".join(f"{r['id']}\n" for r in results))
    return 0
