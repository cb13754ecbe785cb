"""The provider-agnostic pieces: URL grammar, api-version ranges, the router and the README matrix."""

from __future__ import annotations

from pathlib import Path

import pytest

from aml_emulator.arm import support_matrix
from aml_emulator.arm.router import ApiVersionRange, ArmRouter, ResourceProvider, parse_path


def test_parse_item_in_resource_group() -> None:
    path = parse_path("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.X/things/a")
    assert (path.subscription_id, path.resource_group, path.namespace) == ("s", "rg", "Microsoft.X")
    assert (path.resource_type, path.names, path.kind) == ("things", ("a",), "item")
    assert path.operation_name("PUT") == "Microsoft.X/things/write"


def test_parse_collection_in_subscription() -> None:
    path = parse_path("GET", "/subscriptions/s/providers/Microsoft.X/things")
    assert path.resource_group is None
    assert (path.resource_type, path.names, path.kind) == ("things", (), "collection")


def test_parse_post_action_and_child_collection() -> None:
    action = parse_path("POST", "/subscriptions/s/resourcegroups/rg/providers/Microsoft.X/things/a/listKeys")
    assert (action.resource_type, action.name, action.kind) == ("things", "a", "listKeys")
    assert action.operation_name("POST") == "Microsoft.X/things/listKeys/action"
    child = parse_path("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.X/things/a/parts")
    assert (child.resource_type, child.names, child.kind) == ("things/parts", ("a",), "collection")
    # resource groups themselves sit outside the /providers/ grammar
    group = parse_path("DELETE", "/subscriptions/s/resourceGroups/rg")
    assert (group.namespace, group.resource_type, group.resource_group, group.names, group.kind) == (
        "Microsoft.Resources", "resourceGroups", None, ("rg",), "item")
    assert parse_path("GET", "/subscriptions/s/resourcegroups").kind == "collection"


@pytest.mark.parametrize("path", [
    "/", "/subscriptions/s", "/subscriptions/s/resourceGroups/rg/things",
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.X",
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.X/things/..%2f..",
    "/tenants/t/providers/Microsoft.X/things",
])
def test_non_resource_urls_do_not_parse(path: str) -> None:
    assert parse_path("GET", path) is None


def test_api_version_range_is_inclusive_and_knows_previews() -> None:
    versions = ApiVersionRange("2020-01-01", "2021-01-01")
    assert versions.accepts("2020-01-01") and versions.accepts("2021-01-01")
    assert versions.accepts("2020-06-01-preview")
    assert not versions.accepts("2019-12-31")
    assert not versions.accepts("2021-01-02")
    assert not versions.accepts("2020-06-01-beta")


def test_a_namespace_or_operation_registered_twice_is_an_error() -> None:
    provider = ResourceProvider("Microsoft.X", ApiVersionRange("2020-01-01", "2021-01-01"))

    async def handler(request):  # pragma: no cover - never called
        return {}

    provider.operation("GET", "things", "item", summary="things.get")(handler)
    with pytest.raises(ValueError):
        provider.operation("get", "Things", "item", summary="again")(handler)
    with pytest.raises(ValueError):
        ArmRouter([provider, ResourceProvider("microsoft.x", provider.api_versions)])


def test_readme_support_matrix_lists_every_implemented_operation() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for namespace, method, resource_type, kind, summary in support_matrix():
        row = f"| {namespace} | {method} | {resource_type} | {kind} | {summary} |"
        assert row in readme, f"README support matrix lacks: {row}"


def test_coverage_file_is_current() -> None:
    import aml_emulator.arm as arm_pkg
    from aml_emulator.arm.coverage import render

    path = Path(arm_pkg.__file__).parent / "IMPLEMENTATION_COVERAGE.md"
    assert path.read_text() == render(), f"regenerate: python -m aml_emulator.arm.coverage > {path}"


def test_every_sdk_call_named_in_a_summary_exists_in_the_sdk() -> None:
    from aml_emulator.arm.coverage import SDKS, sdk_operations

    for namespace, method, resource_type, kind, summary in support_matrix():
        operations = sdk_operations(SDKS[namespace][1])
        for call in summary.split(","):
            assert call.strip() in operations, f"{call.strip()!r} is not an operation of the SDK"
