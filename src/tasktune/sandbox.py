"""Templates render in jinja2's immutable sandbox, and user text is data.

Two guards: (1) :func:`check_template` refuses, when a template is registered, any reference to a
name or attribute starting with an underscore (``__class__``, ``__globals__``, ``_private``) — the
sandbox would also block these at render time, but a prompt that can only fail later is a trap;
(2) user text is passed as a variable and never parsed as a template, so ``{{ 7*7 }}`` inside a
review stays exactly that.
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


class UnsafeTemplateError(ValueError):
    pass


def check_template(source: str) -> None:
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as err:
        raise UnsafeTemplateError(f"template does not parse: {err.message} (line {err.lineno})") from None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Name):
            name = node.name
        else:
            name = (
                node.arg.value
                if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)
                else ""
            )
        if name.startswith("_"):
            raise UnsafeTemplateError(f"template refers to {name!r}: names starting with '_' are not allowed")


@lru_cache(maxsize=256)
def _compile(source: str):
    return _ENV.from_string(source)


def render(source: str, **variables: object) -> str:
    return _compile(source).render(**variables)
