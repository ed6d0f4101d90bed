"""Layered configuration: vendor, system and user drop-in directories, then environment and flags.

Modules, in pipeline order (the pure ones never touch files, processes, the clock or the env):

* ``layers``   find the layer directories and their drop-in files (systemd rules); fingerprints
* ``readers``  TOML / YAML / JSON text -> plain data plus the line of every key
* ``rktjson``  rkt's own ``rktKind`` JSON files -> the same shape as native files (pure)
* ``schema``   cerberus schemas per kind; problems as ``<file>:<line>: <key>: ...`` (pure)
* ``tree``     values with origins; ``merge`` deep-merges layers (pure)
* ``model``    the frozen, typed :class:`~rktcfg.config.model.Config`
* ``cache``    the validated result, keyed by every layer file's path, size and mtime
* ``loader``   the one entry point: :func:`~rktcfg.config.loader.load_config`

Nothing is imported here, so ``import rktcfg.config.loader`` costs only what it uses.
"""
