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

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


class UnsafeTemplateError(ValueError):
    pass


# What a prompt's templates are rendered with (routes/prompting/template.py): every template gets the
# task's wording; the input template also gets the user's text, which is placed verbatim.
PROMPT_VARIABLES = frozenset({"description", "labels", "label_words", "label_list"})
USER_TEXT_VARIABLES = frozenset({"text", "text_pair"})


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


@lru_cache(maxsize=512)  # the prompt search builds many configs from a few templates
def check_prompt_template(source: str, *, is_input: bool) -> None:
    """``check_template`` plus the variables a prompt's template may use (``is_input``: the input
    template, which must place ``{{ text }}``)."""
    check_template(source)
    if is_input:
        check_variables(source, PROMPT_VARIABLES, verbatim=USER_TEXT_VARIABLES, required="text")
    else:
        check_variables(source, PROMPT_VARIABLES)


def check_variables(
    source: str, known: frozenset[str], *, verbatim: frozenset[str] = frozenset(), required: str | None = None
) -> None:
    """Refuse a (parsing) template that names a variable rendering will not supply, that lacks
    ``required``, or that puts a ``verbatim`` variable anywhere but alone in ``{{ ... }}`` or as an
    ``{% if %}`` condition (``{% if text_pair %}``). Verbatim variables hold user text, which enters
    after rendering through a placeholder (see routes/prompting/template.py): a filter such as
    ``{{ text | lower }}`` would act on the placeholder and silently not on the text, so it is refused
    here rather than ignored."""
    tree = _ENV.parse(source)
    names = meta.find_undeclared_variables(tree) - set(_ENV.globals)
    unknown = sorted(names - known - verbatim)
    if unknown:
        listed = ", ".join(map(repr, unknown))
        _refuse(f"uses {listed}, which is not a variable here; known: {sorted(known | verbatim)}")
    if required is not None and required not in names:
        _refuse(f"must place the input with {{{{ {required} }}}}")
    allowed: set[int] = set()
    for out in tree.find_all(nodes.Output):
        allowed |= {id(n) for n in out.nodes if isinstance(n, nodes.Name)}
    # As a condition, by truth only: a missing pair is the empty string (so `is none` would be false).
    for cond in tree.find_all((nodes.If, nodes.CondExpr)):
        allowed.add(id(cond.test.node if isinstance(cond.test, nodes.Not) else cond.test))
    for name in tree.find_all(nodes.Name):
        if name.name in verbatim and id(name) not in allowed:
            _refuse(
                f"uses {name.name!r} inside an expression (a filter, test or operation on it): the input is "
                f"placed verbatim where {{{{ {name.name} }}}} stands and nothing would be applied to it; "
                f"write {{{{ {name.name} }}}} alone (and test it as {{% if {name.name} %}})"
            )


@lru_cache(maxsize=256)
def _compile(source: str):
    return _ENV.from_string(source)


def render(source: str, **variables: object) -> str:
    return _compile(source).render(**variables)
