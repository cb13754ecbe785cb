"""The IoT Edge route language, parsed with a real grammar (lark) and evaluated on messages.

Grammar (after ``Azure/iotedge`` ``Route.g4`` and the IoT Hub routing query language)::

    [SELECT *] FROM <source> [WHERE <condition>] INTO <sink>

- a source is a ``/``-separated path whose segments are names or ``*`` (``/*``,
  ``/messages/*``, ``/messages/modules/<m>/outputs/<o>``, ...);
- a sink is ``$upstream`` or ``BrokeredEndpoint("/modules/<m>/inputs/<i>")``;
- a condition combines comparisons (``= != <> < <= > >=``) of application properties (bare
  names), system properties (``$connectionModuleId`` or ``{$connectionModuleId}``), body
  fields (``$body.a.b``, JSON bodies), strings, numbers, ``true``/``false`` and
  ``IS_DEFINED``/``IS_STRING``/``IS_NUMBER``/``IS_BOOL`` with ``NOT``, ``AND``, ``OR``.
  A comparison involving an undefined property is false, as in IoT Hub.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
from lark import Lark, Token, Transformer, Tree
from lark.exceptions import LarkError, VisitError

UPSTREAM = "$upstream"
_BROKERED = re.compile(r"^/modules/(?P<module>[^/]+)/inputs/(?P<input>[^/]+)$")
#: the route name rule from Route_priority_and_TTL.md
ROUTE_NAME = re.compile(r"^[^.$# ]+$")
DEFAULT_PRIORITY = 10  # below every explicit priority (0 highest .. 9 lowest)

_GRAMMAR = r"""
    route: (_SELECT "*")? _FROM SOURCE (_WHERE condition)? _INTO sink
    sink: UPSTREAM -> upstream
        | NAME "(" STRING ")" -> function_sink

    ?condition: or_expr
    ?or_expr: and_expr (_OR and_expr)*
    ?and_expr: not_expr (_AND not_expr)*
    ?not_expr: _NOT not_expr -> negation
             | comparison
    ?comparison: operand (COMPARATOR operand)?
    ?operand: STRING -> string
            | NUMBER -> number
            | _TRUE -> true
            | _FALSE -> false
            | SYSPROP -> system_property
            | "{" SYSPROP "}" -> system_property
            | NAME "(" [condition ("," condition)*] ")" -> call
            | NAME -> app_property
            | "(" condition ")"

    _SELECT.2: /select\b/i
    _FROM.2: /from\b/i
    _WHERE.2: /where\b/i
    _INTO.2: /into\b/i
    _AND.2: /and\b/i
    _OR.2: /or\b/i
    _NOT.2: /not\b/i
    _TRUE.2: /true\b/i
    _FALSE.2: /false\b/i
    UPSTREAM.2: /\$upstream\b/i
    SOURCE: /\/[A-Za-z0-9_\-\/*$.]*/
    SYSPROP: /\$[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*/
    NAME: /[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*/
    STRING: /"[^"]*"/ | /'[^']*'/
    NUMBER: /-?\d+(\.\d+)?/
    COMPARATOR: "<>" | "!=" | "<=" | ">=" | "=" | "<" | ">"

    %import common.WS
    %ignore WS
"""

_PARSER = Lark(_GRAMMAR, start="route", parser="lalr")


class RouteError(ValueError):
    """A route that does not parse or names what does not exist; ``str()`` says where."""


@attrs.frozen
class Sink:
    """Where a route sends: ``$upstream``, or a module's input."""

    module: str | None = None
    input: str | None = None

    @property
    def upstream(self) -> bool:
        return self.module is None

    def endpoint_id(self) -> str:
        return UPSTREAM if self.upstream else f"/modules/{self.module}/inputs/{self.input}"


@attrs.frozen
class Message:
    """What routing looks at: the source path, properties and body."""

    source: str
    body: bytes
    properties: dict[str, str] = attrs.field(factory=dict)
    system: dict[str, str] = attrs.field(factory=dict)


_UNDEFINED = object()


@attrs.frozen
class Route:
    name: str
    text: str
    source: tuple[str, ...]
    sink: Sink
    condition: Any = attrs.field(default=None, repr=False, eq=False)
    priority: int = DEFAULT_PRIORITY
    ttl_seconds: int | None = None

    def matches(self, message: Message) -> bool:
        if not _source_matches(self.source, message.source):
            return False
        if self.condition is None:
            return True
        return _evaluate(self.condition, message) is True


def _source_matches(pattern: tuple[str, ...], path: str) -> bool:
    segments = [s for s in path.split("/") if s]
    for index, part in enumerate(pattern):
        if part == "*" and index == len(pattern) - 1:
            return len(segments) >= index
        if index >= len(segments) or (part != "*" and part != segments[index]):
            return False
    return len(segments) == len(pattern)


class _ToRoute(Transformer):
    def route(self, items: list[Any]) -> tuple[Any, ...]:
        source = items[0]
        sink = items[-1]
        condition = items[1] if len(items) == 3 else None
        return str(source), condition, sink

    def upstream(self, _items: list[Any]) -> Sink:
        return Sink()

    def function_sink(self, items: list[Token]) -> Sink:
        function, argument = str(items[0]), str(items[1])[1:-1]
        if function.lower() != "brokeredendpoint":
            raise RouteError(f"unknown sink function {function}(); use BrokeredEndpoint(\"/modules/<m>/inputs/<i>\") or $upstream")
        match = _BROKERED.match(argument)
        if match is None:
            raise RouteError(f"BrokeredEndpoint({argument!r}) must name \"/modules/<module>/inputs/<input>\"")
        return Sink(match.group("module"), match.group("input"))


def parse_route(name: str, text: str, *, priority: int | None = None, ttl_seconds: int | None = None) -> Route:
    """Parse one route; :class:`RouteError` names the route and what is wrong."""
    if not ROUTE_NAME.match(name):
        raise RouteError(f"route name {name!r} is invalid: it must not contain '.', '$', '#' or spaces")
    try:
        tree = _PARSER.parse(text)
        source, condition, sink = _ToRoute().transform(tree)
    except VisitError as exc:
        raise RouteError(f"route {name!r}: {exc.orig_exc}") from None
    except LarkError as exc:
        detail = str(exc).splitlines()[0]
        raise RouteError(f"route {name!r} does not parse ({detail}); the form is "
                         f"'FROM <source> [WHERE <condition>] INTO <sink>'") from None
    if priority is not None and not (isinstance(priority, int) and 0 <= priority <= 9):
        raise RouteError(f"route {name!r}: priority must be an integer 0-9 (0 is highest)")
    if ttl_seconds is not None and not (isinstance(ttl_seconds, int) and 0 <= ttl_seconds <= 4294967295):
        raise RouteError(f"route {name!r}: timeToLiveSecs must be an integer 0-4294967295")
    pattern = tuple(s for s in source.split("/") if s)
    return Route(name=name, text=text, source=pattern, sink=sink, condition=condition,
                 priority=DEFAULT_PRIORITY if priority is None else priority, ttl_seconds=ttl_seconds)


def parse_routes(desired: dict[str, Any]) -> tuple[list[Route], list[str]]:
    """Routes of an ``$edgeHub`` desired document: ``(routes, problems)``, each problem a
    sentence naming its route."""
    routes, problems = [], []
    for name, spec in (desired.get("routes") or {}).items():
        try:
            if isinstance(spec, str):
                routes.append(parse_route(name, spec))
            elif isinstance(spec, dict) and isinstance(spec.get("route"), str):
                routes.append(parse_route(name, spec["route"], priority=spec.get("priority"),
                                          ttl_seconds=spec.get("timeToLiveSecs")))
            else:
                raise RouteError(f"route {name!r} must be a string or an object with a 'route' string")
        except RouteError as exc:
            problems.append(str(exc))
    return routes, problems


# -- evaluation -------------------------------------------------------------------------------

_SYSTEM_NAMES = {
    "messageid": "$.mid", "correlationid": "$.cid", "userid": "$.uid", "contenttype": "$.ct",
    "contentencoding": "$.ce", "connectiondeviceid": "connectionDeviceId",
    "connectionmoduleid": "connectionModuleId", "outputname": "$.on",
}


def _lookup_system(name: str, message: Message) -> Any:
    name = name.lstrip("$")
    if name.lower().startswith("body"):
        try:
            value: Any = json.loads(message.body)
        except ValueError:
            return _UNDEFINED
        for part in name.split(".")[1:]:
            if not isinstance(value, dict) or part not in value:
                return _UNDEFINED
            value = value[part]
        return value
    key = _SYSTEM_NAMES.get(name.lower(), name)
    return message.system.get(key, _UNDEFINED)


def _compare(op: str, left: Any, right: Any) -> bool | None:
    if left is _UNDEFINED or right is _UNDEFINED:
        return None
    # properties travel as strings: compare a property with a number numerically when it is one
    if isinstance(left, str) and isinstance(right, (int, float)) and not isinstance(right, bool):
        try:
            left = float(left)
        except ValueError:
            return None
    if isinstance(right, str) and isinstance(left, (int, float)) and not isinstance(left, bool):
        try:
            right = float(right)
        except ValueError:
            return None
    try:
        if op == "=":
            return left == right
        if op in ("!=", "<>"):
            return left != right
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        if op == ">":
            return left > right
        if op == ">=":
            return left >= right
    except TypeError:
        return None
    return None


def _evaluate(node: Any, message: Message) -> Any:
    if isinstance(node, Tree):
        kind = node.data
        if kind == "or_expr":
            return any(_evaluate(child, message) is True for child in node.children)
        if kind == "and_expr":
            return all(_evaluate(child, message) is True for child in node.children)
        if kind == "negation":
            value = _evaluate(node.children[0], message)
            return None if value is None or value is _UNDEFINED else not value
        if kind == "comparison":
            left, op, right = node.children
            return _compare(str(op), _evaluate(left, message), _evaluate(right, message))
        if kind == "string":
            return str(node.children[0])[1:-1]
        if kind == "number":
            return float(node.children[0])
        if kind == "true":
            return True
        if kind == "false":
            return False
        if kind == "system_property":
            return _lookup_system(str(node.children[0]), message)
        if kind == "app_property":
            return message.properties.get(str(node.children[0]), _UNDEFINED)
        if kind == "call":
            function = str(node.children[0]).upper()
            args = [_evaluate(arg, message) for arg in node.children[1:] if arg is not None]
            value = args[0] if args else _UNDEFINED
            if function == "IS_DEFINED":
                return value is not _UNDEFINED
            if function == "IS_STRING":
                return isinstance(value, str)
            if function == "IS_NUMBER":
                return isinstance(value, (int, float)) and not isinstance(value, bool)
            if function == "IS_BOOL":
                return isinstance(value, bool)
            return None
    return node
