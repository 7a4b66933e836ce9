"""Templates render in jinja2's immutable sandbox, and user text is data.

Two guards: (1) :func:`check_template` refuses, when a template is registered, any way of reaching a
name or attribute starting with an underscore (``__class__``, ``__globals__``, ``_private``): written
out, as a string (``x['__class__']``, ``map(attribute='__class__')``), or built at render time where
it cannot be seen (the ``attr`` filter, a computed subscript or attribute name) — the sandbox would
also block these at render time, but a prompt that can only fail later is a trap;
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


# Filters that look attributes up by a name given as an argument (``map(attribute=...)``, ...).
_ATTRIBUTE_FILTERS = {"map", "selectattr", "rejectattr", "groupby", "sort", "sum", "unique", "min", "max"}
# What a subscript may be computed from: ``labels[0]``, ``labels[loop.index0]``, ``rows[i + 1]``.
_PLAIN_INDEX = (nodes.Const, nodes.Name, nodes.Getattr, nodes.Add, nodes.Sub, nodes.Mul, nodes.Neg)


def _refuse(why: str) -> None:
    raise UnsafeTemplateError(f"template {why}")


def check_template(source: str) -> None:
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as err:
        raise UnsafeTemplateError(f"template does not parse: {err.message} (line {err.lineno})") from None
    for node in tree.find_all((nodes.Getattr, nodes.Name, nodes.Const)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(node, "name", None)
        if isinstance(node, nodes.Const):
            # A string that names a private attribute is refused wherever it is: a subscript, a filter's
            # attribute argument, or a piece of one joined at render time ('_' ~ '_class__').
            name = node.value if isinstance(node.value, str) and "__" in node.value else None
            if isinstance(node.value, str) and node.value.startswith("_"):
                name = node.value
        if name is not None and (name.startswith("_") or "__" in name):
            _refuse(f"refers to {name!r}: names starting with '_' are not allowed")
    for node in tree.find_all(nodes.Filter):
        if node.name == "attr":
            _refuse("uses the 'attr' filter (an attribute looked up by a computed name); write `x.name`")
        if node.name in _ATTRIBUTE_FILTERS:
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                if not isinstance(arg, nodes.Const):
                    _refuse(f"passes a computed value to the {node.name!r} filter; give a plain constant")
    for node in tree.find_all(nodes.Getitem):
        arg = node.arg
        parts = [arg, *arg.find_all(nodes.Node)]
        if not all(isinstance(p, (*_PLAIN_INDEX, nodes.Slice)) for p in parts) or any(
            isinstance(p, nodes.Const) and isinstance(p.value, str) and p is not arg for p in parts
        ):
            _refuse("indexes with a computed name or key; use a constant, a variable or arithmetic")


@lru_cache(maxsize=256)
def _compile(source: str):
    return _ENV.from_string(source)


def render(source: str, **variables: object) -> str:
    return _compile(source).render(**variables)
