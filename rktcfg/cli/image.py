"""``rktcfg image ...``: list, inspect, export, extract and remove stored images."""

from __future__ import annotations

import os

from rktcfg.cli.output import ago, iec_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from rktcfg.cli.context import Context
    from rktcfg.store.images import ImageRecord

FIELDS = ("id", "name", "size", "importtime", "lastused")
SORT_KEYS = ("name", "importtime", "lastused", "size", "id")
HEADERS = {
    "id": "ID",
    "name": "NAME",
    "size": "SIZE",
    "importtime": "IMPORT TIME",
    "lastused": "LAST USED",
}


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.output import add_output_option

    parser.description = "Work with the images in the store (fetch them with `rktcfg fetch`)."
    sub = parser.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)
    formatter = parser.formatter_class  # rktcfg's: no shutil import just for the width

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = sub.add_parser(name, formatter_class=formatter, **kwargs)
        return command

    p = add("list", help="list stored images", description="List stored images.")
    p.add_argument(
        "--fields",
        default=",".join(FIELDS),
        help=f"comma-separated columns from {','.join(FIELDS)}",
    )
    p.add_argument("--sort", choices=SORT_KEYS, default="importtime", help="sort by this field")
    p.add_argument("--order", choices=("asc", "desc"), default="asc", help="sort order")
    p.add_argument("--no-legend", action="store_true", help="omit the header line")
    p.add_argument("--full", action="store_true", help="full IDs, raw sizes and times")
    add_output_option(p)

    p = add("rm", help="remove images", description="Remove images and their blobs.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="ID, short ID or name[:version]")
    add_output_option(p)

    p = add(
        "cat-manifest", help="print an image manifest", description="Print an image's manifest."
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--pretty-print", action="store_true", default=True, help="indent (default)")
    p.add_argument("--no-pretty-print", dest="pretty_print", action="store_false")

    p = add(
        "export",
        help="write a stored image to an ACI file",
        description="Write a stored image as the uncompressed ACI whose SHA-512 is its ID.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")

    p = add(
        "extract",
        help="unpack an image (without dependencies) into a directory",
        description="Unpack a stored image, without its dependencies, into DIR.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("directory", metavar="DIR")  # not "dir": that is the global --dir
    p.add_argument("--rootfs-only", action="store_true", help="only the root filesystem")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")

    p = add(
        "render",
        help="unpack an image with its dependencies into a directory",
        description="Render a stored image with its dependencies (as a pod sees it) into DIR.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--rootfs-only", action="store_true", help="only the root filesystem")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")

    p = add(
        "verify",
        help="re-hash an image and its rendered tree; repair the tree",
        description="Check that an image's blob still hashes to its ID and that its rendered "
        "tree matches what was rendered; a damaged tree is rendered again.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--no-repair", action="store_true", help="report damage only")
    add_output_option(p)

    p = add(
        "gc",
        help="remove unused images and rendered trees",
        description="Remove images not used for the grace period, blobs no record names, "
        "and rendered trees no pod uses (trees are rendered again when needed).",
    )
    p.add_argument(
        "--grace-period",
        default="24h",
        metavar="DURATION",
        help="keep images used within this long (default 24h)",
    )
    add_output_option(p)

    p = add(
        "build",
        help="build an ACI from a root filesystem directory",
        description=BUILD_DESCRIPTION,
    )
    p.add_argument("rootfs", metavar="DIR", help="the root filesystem")
    p.add_argument("output", metavar="OUT.aci")
    p.add_argument("--name", help="image name, an AC Identifier (required without --manifest)")
    p.add_argument("--manifest", metavar="FILE", help="start from this image manifest (JSON)")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--exec", dest="exec_", metavar="CMD", help='app command, e.g. "/bin/sh -c x"')
    p.add_argument("--user", help="app user (default 0)")
    p.add_argument("--group", help="app group (default 0)")
    p.add_argument("--working-dir", metavar="PATH", help="app working directory")
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--port", action="append", default=[], metavar="NAME:PROTO:PORT")
    p.add_argument("--mount", action="append", default=[], metavar="NAME:PATH")
    p.add_argument("--isolator", action="append", default=[], metavar="NAME=JSON")
    p.add_argument(
        "--dependency",
        action="append",
        default=[],
        metavar="NAME[:VER][,K=V...][@ID]",
        help="a dependency, as an appc app string, optionally @sha512-<id>",
    )
    p.add_argument("--annotation", action="append", default=[], metavar="K=V")
    p.add_argument("--keep-owner", action="store_true", help="keep file owners (default: root)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.aci if it exists")
    add_output_option(p)


BUILD_DESCRIPTION = """\
Build an ACI from a root filesystem directory, like actool build. The output is
deterministic: entries sorted, owners root unless --keep-owner, mtimes clamped to
SOURCE_DATE_EPOCH when it is set; the same input gives the same bytes and the same ID.
os and arch labels default to this host's. Prints the image ID."""


def run(args: argparse.Namespace, ctx: Context) -> int:
    command = args.image_command
    handler = {
        "list": _list,
        "rm": _rm,
        "cat-manifest": _cat_manifest,
        "export": _export,
        "extract": _extract,
        "build": _build,
        "render": _render,
        "verify": _verify,
        "gc": _gc,
    }[command]
    return handler(args, ctx)


def _cell(record: ImageRecord, field: str, full: bool, now: int) -> str:
    if field == "id":
        return record.id if full else record.short_id
    if field == "name":
        return record.name_version
    if field == "size":
        return str(record.size) if full else iec_size(record.size)
    when = record.import_time if field == "importtime" else record.last_used
    return str(when) if full else ago(when, now)


def _row(record: ImageRecord, fields: list[str], full: bool, now: int) -> list[str]:
    return [_cell(record, f, full, now) for f in fields]


def _list(args: argparse.Namespace, ctx: Context) -> int:
    import time

    from rktcfg.cli.output import emit, table
    from rktcfg.errors import UsageError

    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    unknown = [f for f in fields if f not in FIELDS]
    if unknown or not fields:
        raise UsageError(
            f"--fields: unknown field {unknown[0] if unknown else '(none)'!r} "
            f"(choose from {', '.join(FIELDS)})"
        )
    with ctx.image_store() as store:
        records = store.records(with_manifest=False)
    keys: dict[str, Any] = {
        "name": lambda r: r.name_version,
        "importtime": lambda r: r.import_time,
        "lastused": lambda r: r.last_used,
        "size": lambda r: r.size,
        "id": lambda r: r.id,
    }
    records.sort(key=keys[args.sort], reverse=args.order == "desc")
    now = time.time_ns()
    emit(
        ctx,
        lambda: [r.as_dict() for r in records],
        lambda: table(
            [HEADERS[f] for f in fields],
            [_row(r, fields, args.full, now) for r in records],
            legend=not args.no_legend,
        ),
    )
    return 0


def _rm(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit
    from rktcfg.errors import ExitCode, RktcfgError

    removed: list[str] = []
    failed: list[dict[str, str]] = []
    status = ExitCode.OK
    with ctx.image_store() as store:
        for ref in args.images:
            try:
                record = store.resolve(ref)
                store.remove(record.id)
            except RktcfgError as exc:
                ctx.err.write(f"rktcfg: error: {exc.message}\n")
                failed.append({"image": ref, "error": exc.message})
                status = max(status, exc.exit_code)
                continue
            removed.append(record.id)
            if args.output == "text":
                ctx.out.write(f"removed image {record.id} ({record.name_version})\n")
    emit(
        ctx,
        {"removed": removed, "failed": failed},
        lambda: f"{len(removed)} image(s) successfully removed\n",
    )
    return int(status)


def _cat_manifest(args: argparse.Namespace, ctx: Context) -> int:
    import json

    with ctx.image_store() as store:
        record = store.resolve(args.image)
    manifest = record.manifest()
    text = json.dumps(manifest, indent=4 if args.pretty_print else None)
    ctx.out.write(text + "\n")
    return 0


def _refuse_existing(path: str, overwrite: bool, what: str) -> None:
    from rktcfg.errors import InputError

    if os.path.realpath(path) == "/":
        raise InputError(f"{path}: refusing to write an image over /")
    if os.path.lexists(path) and not overwrite:
        raise InputError(f"{path}: output {what} exists (try --overwrite)")


def _export(args: argparse.Namespace, ctx: Context) -> int:
    import shutil

    from rktcfg.fsutil import AtomicFile

    _refuse_existing(args.file, args.overwrite, "file")
    with ctx.image_store() as store:
        record = store.resolve(args.image)
        blob = store.blob_path(record.id)
        target = os.path.abspath(args.file)
        with open(blob, "rb") as src, AtomicFile(target) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if ctx.options.debug:
        ctx.debug(f"exported {record.id} to {target}")
    return 0


class _Staged:
    """A directory built beside ``target`` and renamed over it only when complete."""

    def __init__(self, target: str, overwrite: bool) -> None:
        _refuse_existing(target, overwrite, "directory")
        self.target = os.path.abspath(target)
        parent = os.path.dirname(self.target)
        os.makedirs(parent, exist_ok=True)
        self.path = os.path.join(parent, f".{os.path.basename(self.target)}.{os.getpid()}.new")

    def __enter__(self) -> str:
        os.mkdir(self.path, 0o755)
        return self.path

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        import shutil

        try:
            if kind is None:
                if os.path.isdir(self.target) and not os.path.islink(self.target):
                    shutil.rmtree(self.target)
                elif os.path.lexists(self.target):
                    os.unlink(self.target)
                os.rename(self.path, self.target)
        finally:
            if os.path.isdir(self.path):
                shutil.rmtree(self.path)


def _extract(args: argparse.Namespace, ctx: Context) -> int:
    import tarfile

    from rktcfg.image import tarsafe

    staged = _Staged(args.directory, args.overwrite)
    with ctx.image_store() as store:
        record = store.resolve(args.image)
        with staged as staging, tarfile.open(store.blob_path(record.id), mode="r:") as tar:
            report = tarsafe.extract(tar, staging, prefix="rootfs" if args.rootfs_only else "")
    for warning in report.warnings:
        ctx.err.write(f"rktcfg: warning: {warning}\n")
    return 0


def _pairs(values: list[str], flag: str, sep: str = "=") -> list[tuple[str, str]]:
    from rktcfg.errors import UsageError

    out = []
    for value in values:
        key, found, rest = value.partition(sep)
        if not found or not key:
            raise UsageError(f"{flag} {value!r}: expected KEY{sep}VALUE")
        out.append((key, rest))
    return out


def build_manifest(args: argparse.Namespace) -> dict[str, Any]:
    """The manifest ``image build`` writes: --manifest, then each flag on top."""
    import json
    import shlex

    from rktcfg.errors import UsageError
    from rktcfg.image.manifest import host_os_arch, parse_app_string

    manifest: dict[str, Any] = {"acKind": "ImageManifest", "acVersion": "0.8.11"}
    if args.manifest:
        try:
            with open(args.manifest, encoding="utf-8") as handle:
                manifest = json.load(handle)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--manifest {args.manifest}: {exc}") from None
        if not isinstance(manifest, dict):
            raise UsageError(f"--manifest {args.manifest}: not a JSON object")
    if args.name:
        manifest["name"] = args.name
    if "name" not in manifest:
        raise UsageError("image build needs --name (or a --manifest with a name)")
    labels = {
        entry["name"]: entry["value"]
        for entry in manifest.get("labels", [])
        if isinstance(entry, dict)
    }
    host_os, host_arch = host_os_arch()
    labels.setdefault("os", host_os)
    labels.setdefault("arch", host_arch)
    labels.update(_pairs(args.label, "--label"))
    manifest["labels"] = [{"name": k, "value": v} for k, v in labels.items()]
    app_flags = (
        args.exec_,
        args.user,
        args.group,
        args.working_dir,
        args.env,
        args.port,
        args.mount,
        args.isolator,
    )
    if any(app_flags) or "app" in manifest:
        app = manifest.setdefault("app", {})
        if args.exec_ is not None:
            app["exec"] = shlex.split(args.exec_)
        app["user"] = args.user if args.user is not None else app.get("user", "0")
        app["group"] = args.group if args.group is not None else app.get("group", "0")
        if args.working_dir:
            app["workingDirectory"] = args.working_dir
        for key, value in _pairs(args.env, "--env"):
            app.setdefault("environment", []).append({"name": key, "value": value})
        for spec in args.port:
            name, proto, port = [*spec.split(":"), "", ""][:3]
            if not port.isdigit():
                raise UsageError(f"--port {spec!r}: expected NAME:PROTOCOL:PORT, like http:tcp:80")
            app.setdefault("ports", []).append({"name": name, "protocol": proto, "port": int(port)})
        for name, path in _pairs(args.mount, "--mount", ":"):
            app.setdefault("mountPoints", []).append({"name": name, "path": path})
        for name, value in _pairs(args.isolator, "--isolator"):
            try:
                decoded = json.loads(value)
            except ValueError:
                raise UsageError(f"--isolator {name}: value must be JSON (got {value!r})") from None
            app.setdefault("isolators", []).append({"name": name, "value": decoded})
    for spec in args.dependency:
        text, _, image_id = spec.partition("@")
        dep_name, dep_labels = parse_app_string(text, source="--dependency")
        dependency: dict[str, Any] = {"imageName": dep_name}
        if dep_labels:
            dependency["labels"] = [{"name": k, "value": v} for k, v in dep_labels.items()]
        if image_id:
            dependency["imageID"] = image_id
        manifest.setdefault("dependencies", []).append(dependency)
    for key, value in _pairs(args.annotation, "--annotation"):
        manifest.setdefault("annotations", []).append({"name": key, "value": value})
    return manifest


def _build(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit
    from rktcfg.errors import UsageError
    from rktcfg.image.build import build_aci

    _refuse_existing(args.output, args.overwrite, "file")
    epoch_text = ctx.environ.get("SOURCE_DATE_EPOCH")
    try:
        epoch = int(epoch_text) if epoch_text else None
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer (got {epoch_text!r})") from None
    manifest = build_manifest(args)
    image_id = build_aci(
        args.rootfs,
        args.output,
        manifest,
        keep_owner=args.keep_owner,
        source_date_epoch=epoch,
    )
    emit(ctx, {"id": image_id, "file": args.output}, lambda: image_id + "\n")
    return 0


def _render(args: argparse.Namespace, ctx: Context) -> int:
    import subprocess

    from rktcfg.errors import RuntimeFailure
    from rktcfg.store.trees import TreeStore

    staged = _Staged(args.directory, args.overwrite)
    with ctx.image_store() as store:
        record = store.resolve(args.image)
        rootfs = TreeStore(ctx.data_dir(), store).render(record.id)
        with staged as staging:
            into = staging if args.rootfs_only else os.path.join(staging, "rootfs")
            if not args.rootfs_only:
                os.mkdir(into, 0o755)
                with open(os.path.join(staging, "manifest"), "w", encoding="utf-8") as handle:
                    handle.write(record.manifest_json or "{}")
            # cp -a keeps hard links, owners, modes, devices and xattrs.
            copied = subprocess.run(
                ["cp", "-a", "--", rootfs + "/.", into + "/"], capture_output=True, text=True
            )
            if copied.returncode != 0:
                raise RuntimeFailure(f"copying the rendered tree failed: {copied.stderr.strip()}")
    return 0


def _verify(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit
    from rktcfg.image.aci import hash_file
    from rktcfg.store.trees import TreeStore

    results: list[dict[str, Any]] = []
    status = 0
    with ctx.image_store() as store:
        trees = TreeStore(ctx.data_dir(), store)
        for ref in args.images:
            record = store.resolve(ref)
            if trees.get(record.id) is not None:
                problems = trees.verify(record.id, repair=not args.no_repair)
            else:
                digest, _ = hash_file(store.blob_path(record.id))
                problems = [] if digest == record.id else [f"blob hashes to {digest}"]
            unrepaired = args.no_repair or any(p.startswith("not repaired") for p in problems)
            if problems and (unrepaired or any("blob" in p for p in problems)):
                status = 1
            results.append(
                {
                    "id": record.id,
                    "name": record.name_version,
                    "problems": problems,
                    "repaired": bool(problems) and not unrepaired,
                }
            )

    def text() -> str:
        lines = []
        for r in results:
            verdict = "ok" if not r["problems"] else ("repaired" if r["repaired"] else "DAMAGED")
            lines.append(f"{r['id'][:19]}  {r['name']}  {verdict}")
            lines.extend(f"  {p}" for p in r["problems"])
        return "\n".join(lines) + "\n"

    emit(ctx, results, text)
    return status


def _gc(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit
    from rktcfg.durations import parse_duration
    from rktcfg.errors import UsageError
    from rktcfg.store.trees import TreeStore

    try:
        grace = parse_duration(args.grace_period)
    except ValueError as exc:
        raise UsageError(f"--grace-period: {exc}") from None
    from rktcfg.pods import Pods

    # Images (and their trees) that prepared, running or exited pods use are never removed.
    in_use = Pods(ctx.data_dir()).in_use_images()
    with ctx.image_store() as store:
        removed, orphans = store.gc(grace_ns=grace, in_use=in_use)
        trees = TreeStore(ctx.data_dir(), store)
        swept = trees.sweep()
        dropped = [tree_id for tree_id in trees.ids() if tree_id not in in_use]
        for tree_id in dropped:
            trees.remove(tree_id)
            store.set_tree_size(tree_id, None)
    emit(
        ctx,
        {"images": removed, "blobs": orphans, "trees": dropped, "swept": swept},
        lambda: (
            "".join(f"removed image {i}\n" for i in removed)
            + f"{len(removed)} image(s), {len(dropped)} tree(s), {len(orphans) + len(swept)} "
            "leftover file(s) removed\n"
        ),
    )
    return 0
