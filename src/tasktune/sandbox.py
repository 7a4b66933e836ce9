"""Templates render in jinja2's immutable sandbox, and user text is data.

Two guards: (1) :func:`check_template` refuses, when a template is registered, the ways of reaching a
name or attribute starting with an underscore (``__class__``, ``__globals__``, ``_private``) that can
be seen before rendering: written out, as a string (``x['__class__']``, ``map(attribute='__class__')``,
a piece like ``'__cl'``), the ``attr`` filter, an attribute argument or a subscript built by filters or
string joins. A key held in a variable and built at render time cannot be seen; the immutable sandbox
refuses it then (``SecurityError``) — this check is for a clear message at registration, the sandbox
is the boundary;
(2) user text is passed as a variable and never parsed as a template, so ``{{ 7*7 }}`` inside a
review stays exactly that.
"""

from __future__ import annotations

import re
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


class UnsafeTemplateError(ValueError):
    pass


# Filters that look an attribute up by a name given as an argument: the first positional argument of
# these, and an ``attribute=`` keyword of any filter (map, sort, sum, unique, min, max, join, ...).
_ATTRIBUTE_FIRST = {"selectattr", "rejectattr", "groupby"}
# What a subscript may be computed from: ``labels[0]``, ``labels[loop.index0 + 1]``, ``words[labels[i]]``.
_PLAIN_INDEX = (
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Add,
    nodes.Sub,
    nodes.Mul,
    nodes.Mod,
    nodes.FloorDiv,
    nodes.Neg,
)
# A string that names a private attribute: '_x', '__class__', a piece like '__cl' or 'ass__'.
# Underscores alone ('_', '____') are ordinary text (``replace(" ", "_")``).
_PRIVATE = re.compile(r"^_+[A-Za-z0-9]|__[A-Za-z0-9]|[A-Za-z0-9]__")


def _refuse(why: str) -> None:
    raise UnsafeTemplateError(f"template {why}")


def check_template(source: str) -> None:
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as err:
        raise UnsafeTemplateError(f"template does not parse: {err.message} (line {err.lineno})") from None
    for node in tree.find_all((nodes.Getattr, nodes.Name)):
        name = node.attr if isinstance(node, nodes.Getattr) else node.name
        if name.startswith("_"):
            _refuse(f"refers to {name!r}: names starting with '_' are not allowed")
    for node in tree.find_all(nodes.Const):
        # A string naming a private attribute is refused wherever it is: a subscript, a filter's
        # attribute argument, or a piece of one joined at render time ('__cl' ~ 'ass__').
        if isinstance(node.value, str) and _PRIVATE.search(node.value):
            _refuse(f"refers to {node.value!r}: names starting with '_' are not allowed")
    for node in tree.find_all(nodes.Filter):
        if node.name == "attr":
            _refuse("uses the 'attr' filter (an attribute looked up by a computed name); write `x.name`")
        named = [kw.value for kw in node.kwargs if kw.key == "attribute"]
        if node.name in _ATTRIBUTE_FIRST and node.args:
            named.append(node.args[0])
        if any(not isinstance(arg, nodes.Const) for arg in named):
            _refuse(f"passes a computed attribute name to the {node.name!r} filter; give a plain constant")
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
