"""Render ``*.j2`` pod files with Jinja2, and read the variables they see.

Templates are rendered with ``StrictUndefined`` (a variable nobody set is an error, never an
empty string) and ``keep_trailing_newline``. They see the variables of the vars files
(YAML, JSON or TOML tables, merged in order: tables deeply, everything else replaced), then
the ``--var k=v`` variables, and ``env``, the environment. ``{% include %}`` and
``{% import %}`` name files relative to the including template; every file read counts as a
source of the load.

Errors point at the template and its line: ``pods/web.yaml.j2:7: 'port' is undefined``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from rktcfg.errors import Problem, ValidationError

#: The variable that holds the environment.
ENV = "env"


def merge_variables(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: tables merge deeply, other values replace."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            out[key] = merge_variables(below, value)
        else:
            out[key] = value
    return out


class Renderer:
    """One Jinja2 environment for a load; renders each template with the same variables."""

    def __init__(self, variables: Mapping[str, Any], read_text: Callable[[str], str]) -> None:
        import jinja2

        renderer = self

        class _Loader(jinja2.BaseLoader):
            def get_source(
                self, environment: jinja2.Environment, template: str
            ) -> tuple[str, str, Callable[[], bool]]:
                try:
                    text = read_text(template)
                except OSError as exc:
                    raise jinja2.TemplateNotFound(
                        f"{renderer.display(template)} ({exc.strerror})"
                    ) from None
                renderer.read.append(template)
                return text, template, lambda: True

        class _Environment(jinja2.Environment):
            def join_path(self, template: str, parent: str) -> str:
                """Names in include/import are relative to the including template."""
                path = os.path.normpath(os.path.join(os.path.dirname(parent), template))
                shown = os.path.join(os.path.dirname(renderer.display(parent)), template)
                renderer.displays.setdefault(path, os.path.normpath(shown))
                return path

        self.variables = dict(variables)
        self.read: list[str] = []  # absolute paths of the files templates included
        self.displays: dict[str, str] = {}  # absolute path -> path as shown in messages
        self._jinja = jinja2
        self._environment = _Environment(
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            loader=_Loader(),
            cache_size=0,
        )

    def display(self, path: str) -> str:
        return self.displays.get(path, path)

    def render(self, text: str, path: str, display: str) -> str:
        """The rendered text of the template at ``path`` (absolute), shown as ``display``."""
        jinja2 = self._jinja
        self.displays[path] = display
        try:
            code = self._environment.compile(text, name=path, filename=path)
            template = self._environment.template_class.from_code(
                self._environment, code, self._environment.make_globals(None)
            )
            rendered: str = template.render(self.variables)
        except jinja2.TemplateSyntaxError as exc:
            file = self.display(exc.filename or path)
            raise ValidationError(
                [Problem(f"invalid template: {exc.message}", file=file, line=exc.lineno)]
            ) from None
        except Exception as exc:  # the template's own code failed: show where
            file, line = self._where(exc, path)
            if isinstance(exc, jinja2.TemplateNotFound):
                message = f"cannot include {exc.message}"
            elif isinstance(exc, jinja2.TemplateError):
                message = exc.message or type(exc).__name__
            else:
                message = f"{type(exc).__name__}: {exc}"
            raise ValidationError([Problem(message, file=file, line=line)]) from None
        return rendered

    def _where(self, exc: BaseException, path: str) -> tuple[str, int | None]:
        """The innermost template frame of the traceback: (file as shown, line)."""
        file, line = self.display(path), None
        tb = exc.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_code.co_filename
            if name == path or name in self.displays:
                file, line = self.display(name), tb.tb_lineno
            tb = tb.tb_next
        return file, line
