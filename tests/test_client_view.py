"""What clients see (issue 15, items 11, 12 and 14): one request-id rule, parseable ErrorInfo
metadata, the field named in details.field, one processingTime, no future usage periods."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from plutos.v1 import processing_pb2

from tests.conftest import MODEL, GrpcClients, error_trailers, rich_status

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("given", ["abc def", "", "x" * 129, "a/b", "a\tb", 'a"b'])
async def test_a_rejected_request_id_is_replaced_everywhere(http: httpx.AsyncClient, given: str) -> None:
    headers = {"X-Request-Id": given}
    r = await http.post("/process", json={"input": "Hi", "model": "no-such-model"}, headers=headers)
    assert r.status_code == 400
    assert r.headers["x-request-id"].startswith("req_")
    assert r.json()["error"]["requestId"] == r.headers["x-request-id"]


@pytest.mark.parametrize("given", ["abc-def_1.2:3", "0190f5a4-6b8e-7c3d-9a1b-2c3d4e5f6a7b", "r" * 128])
async def test_a_good_request_id_is_kept_everywhere(http: httpx.AsyncClient, given: str) -> None:
    r = await http.post("/process", json={"input": "Hi", "model": "no-such-model"}, headers={"X-Request-Id": given})
    assert r.headers["x-request-id"] == given == r.json()["error"]["requestId"]


async def test_grpc_uses_the_same_rule(grpc_clients: GrpcClients, auth_md: tuple[tuple[str, str], ...]) -> None:
    for given, kept in (("abc def", False), ("abc-def", True)):
        call = grpc_clients.processing.Process(
            processing_pb2.ProcessRequest(input="Hi", model="no-such-model"),
            metadata=(*auth_md, ("x-request-id", given)),
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        got = dict(error_trailers(info.value))["x-request-id"]
        assert isinstance(got, str)
        assert (got == given) is kept and (kept or got.startswith("req_"))


async def test_error_info_metadata_is_json(grpc_clients: GrpcClients, auth_md: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await grpc_clients.processing.Process(
            processing_pb2.ProcessRequest(input="Hi", model="no-such-model"), metadata=auth_md
        )
    status = rich_status(info.value)  # also checks it agrees with the call's code and message
    assert status is not None
    error_info = error_details_pb2.ErrorInfo()
    next(d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)).Unpack(error_info)
    assert error_info.metadata["model"] == "no-such-model"  # strings as they are
    assert MODEL in json.loads(error_info.metadata["available"])  # lists as JSON, never a repr


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"maxTokens": 2147483648}, "options.maxTokens"),
        ({"maxTokens": 10**30}, "options.maxTokens"),
        ({"stop": "x"}, "options.stop"),
        ({"stop": [1]}, "options.stop[0]"),  # the item, by index (as the NUL rule names it)
        ({"temperature": "hot"}, "options.temperature"),
        ({"maxTokens": 0}, "options.maxTokens"),
    ],
)
async def test_details_field_names_the_field(http: httpx.AsyncClient, options: dict[str, object], field: str) -> None:
    r = await http.post("/process", json={"input": "Hi", "model": MODEL, "options": options})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["details"]["field"] == field, error
    assert "_" not in error["message"].replace("max_tokens", "")  # no internal names


async def test_processing_time_is_one_figure(http: httpx.AsyncClient) -> None:
    r = await http.post("/process", json={"input": "Hi", "model": MODEL, "options": {"maxTokens": 2}})
    got = await http.get(f"/process/{r.json()['id']}")
    assert got.json()["processingTime"] == r.json()["processingTime"]


async def test_a_future_start_date_is_refused(http: httpx.AsyncClient) -> None:
    r = await http.get("/usage", params={"start_date": "2999-01-01"})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "start_date"


def test_the_readme_links_the_api_reference_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "](docs/api-reference.txt)" in readme and "../shared" not in readme
    assert (ROOT / "docs" / "api-reference.txt").is_file()
