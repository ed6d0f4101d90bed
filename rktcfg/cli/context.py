"""What every command gets: the parsed global options, the environment, output streams,
and the configuration, loaded once and only when a command asks for it."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import IO

    from rktcfg.config.loader import Effective, Inputs
    from rktcfg.config.model import Config
    from rktcfg.store.images import ImageStore


class Context:
    def __init__(
        self,
        options: argparse.Namespace,
        environ: Mapping[str, str],
        out: IO[str],
        err: IO[str],
    ) -> None:
        self.options = options
        self.environ = environ
        self.out = out
        self.err = err
        self.debug_enabled = bool(getattr(options, "debug", False))
        self._effective: Effective | None = None

    def debug(self, message: str) -> None:
        if self.debug_enabled:
            self.err.write(f"rktcfg: debug: {message}\n")

    def warn_all(self, messages: list[str]) -> None:
        for message in messages:
            self.err.write(f"rktcfg: warning: {message}\n")

    def inputs(self) -> Inputs:
        from rktcfg.config.loader import inputs_from

        o = self.options
        return inputs_from(
            vendor=o.vendor_config,
            system=o.system_config,
            user=o.user_config,
            data_dir=o.dir,
            environ=self.environ,
        )

    def effective(self) -> Effective:
        """The validated effective configuration (from the cache when nothing changed)."""
        if self._effective is None:
            from rktcfg.config.cache import default_cache_file
            from rktcfg.config.loader import load_effective

            inputs = self.inputs()
            for layer in inputs.layers:
                self.debug(f"{layer.name} config: {layer.path} ({layer.chosen_by})")
            self._effective = load_effective(inputs, cache_file=default_cache_file(self.environ))
            for note in self._effective.notes:
                self.debug(note)
        return self._effective

    def config(self) -> Config:
        return self.effective().config()

    def data_dir(self) -> str:
        """The data directory, without building the typed Config (that costs a few ms)."""
        data: str = self.effective().document["paths"]["data"]
        return data

    def image_store(self) -> ImageStore:
        from rktcfg.store.images import ImageStore

        return ImageStore(self.data_dir())
