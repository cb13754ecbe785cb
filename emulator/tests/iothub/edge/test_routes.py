"""The route language: sources, sinks, WHERE conditions, priorities and TTLs, and clear errors."""

from __future__ import annotations

import pytest

from aml_emulator.iothub.edge.routes import Message, RouteError, parse_route, parse_routes

SENSOR_OUT = Message("/messages/modules/sensor/outputs/readings", b'{"t": 31.5}',
                     {"kind": "temperature", "level": "7"}, {"connectionModuleId": "sensor", "connectionDeviceId": "edge"})


@pytest.mark.parametrize("source, expected", [
    ("/*", True), ("/messages/*", True), ("/messages/modules/*", True), ("/messages/modules/sensor/*", True),
    ("/messages/modules/sensor/outputs/*", True), ("/messages/modules/sensor/outputs/readings", True),
    ("/messages/modules/sensor/outputs/other", False), ("/messages/modules/model/*", False),
    ("/twinChangeNotifications", False),
])
def test_sources_match_by_segment(source, expected):
    assert parse_route("r", f"FROM {source} INTO $upstream").matches(SENSOR_OUT) is expected


@pytest.mark.parametrize("condition, expected", [
    ("kind = 'temperature'", True),
    ('kind = "pressure"', False),
    ("level > 5 AND kind <> 'x'", True),
    ("level > 8 OR $connectionModuleId = 'sensor'", True),
    ("{$connectionModuleId} = 'model'", False),
    ("NOT IS_DEFINED($connectionModuleId)", False),
    ("IS_DEFINED(missing)", False),
    ("missing = 'x'", False),
    ("NOT (missing = 'x')", False),
    ("$body.t >= 30", True),
    ("$body.t < 30", False),
])
def test_where_conditions(condition, expected):
    route = parse_route("r", f"FROM /messages/* WHERE {condition} INTO $upstream")
    assert route.matches(SENSOR_OUT) is expected


def test_keywords_are_case_insensitive_and_select_is_optional():
    route = parse_route("r", 'select * from /messages/modules/sensor/outputs/* where kind = "temperature" '
                             'into BrokeredEndpoint("/modules/model/inputs/input1")')
    assert (route.sink.module, route.sink.input) == ("model", "input1")


def test_object_form_carries_priority_and_ttl_and_bad_ones_are_named():
    routes, problems = parse_routes({"routes": {
        "fast": {"route": "FROM /* INTO $upstream", "priority": 0, "timeToLiveSecs": 30},
        "plain": "FROM /messages/* INTO $upstream",
        "broken": "FROM /x WHERE INTO $upstream",
        "badsink": 'FROM /x INTO Queue("/modules/a/inputs/b")',
        "bad.name": "FROM /* INTO $upstream",
        "toolow": {"route": "FROM /* INTO $upstream", "priority": 12},
    }})
    by_name = {r.name: r for r in routes}
    assert by_name["fast"].priority == 0 and by_name["fast"].ttl_seconds == 30
    assert by_name["plain"].priority == 10
    assert len(problems) == 4
    assert any("'broken' does not parse" in p for p in problems)
    assert any("Queue()" in p for p in problems)
    assert any("'bad.name'" in p for p in problems)
    assert any("priority must be an integer 0-9" in p for p in problems)
