"""The bare path the issue calibrates its targets against: Starlette → grpc.aio → aiohttp, nothing else.

One process, one event loop (uvloop), as the gateway: a Starlette route parses the JSON body into a
``ProcessRequest``, calls ``ProcessingService/Process`` over a real gRPC channel on loopback, whose
handler POSTs the same upstream body the gateway sends to the mock with aiohttp, reads the streamed
answer whole and returns a ``ProcessResponse``, which the route renders as JSON. No auth, no limits,
no store, no SSE parsing beyond joining the content. The issue's figure for it is ~1,550 RPS on
"such a machine"; measuring it here, beside the gateway, tells how far the gateway is from the
floor on *this* machine, whatever its speed.

    python -m bench.bare_path --http-port 18101 --grpc-port 18102 --upstream http://127.0.0.1:18080/v1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import aiohttp
import grpc
import orjson
import uvicorn
from plutos.v1 import processing_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PROCESS = "/plutos.v1.ProcessingService/Process"


def upstream_body(request: processing_pb2.ProcessRequest) -> bytes:
    return orjson.dumps(
        {
            "model": "bench",
            "messages": [{"role": "user", "content": request.input}],
            "temperature": 0.7,
            "top_p": 1.0,
            "max_tokens": request.options.max_tokens or 1000,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )


async def serve(http_port: int, grpc_port: int, upstream: str, tune: bool = False) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    url = f"{upstream}/chat/completions"

    async def process(request: processing_pb2.ProcessRequest, context: Any) -> processing_pb2.ProcessResponse:
        async with session.post(url, data=upstream_body(request), headers={"content-type": "application/json"}) as r:
            raw = await r.read()
        parts = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data: {"):
                for choice in orjson.loads(line[6:]).get("choices", ()):
                    parts.append(choice.get("delta", {}).get("content") or "")
        return processing_pb2.ProcessResponse(id="proc_bare", output="".join(parts), model=request.model)

    handler = grpc.method_handlers_generic_handler(
        "plutos.v1.ProcessingService",
        {
            "Process": grpc.unary_unary_rpc_method_handler(
                process,
                request_deserializer=processing_pb2.ProcessRequest.FromString,
                response_serializer=processing_pb2.ProcessResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    call = channel.unary_unary(
        PROCESS, processing_pb2.ProcessRequest.SerializeToString, processing_pb2.ProcessResponse.FromString
    )

    async def endpoint(request: Request) -> Response:
        body = orjson.loads(await request.body())
        message = processing_pb2.ProcessRequest(input=body["input"], model=body["model"])
        message.options.max_tokens = body.get("options", {}).get("maxTokens", 0)
        reply = await call(message)
        return Response(
            orjson.dumps({"id": reply.id, "output": reply.output, "model": reply.model}),
            media_type="application/json",
        )

    app = Starlette(routes=[Route("/v1/process", endpoint, methods=["POST"])])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=http_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
    )
    if tune:  # the gateway's garbage-collector settings (server/gctune.py), for a like-for-like floor
        from server.gctune import tune_gc

        tune_gc()
    print(f"bare path on http://127.0.0.1:{http_port}/v1/process", flush=True)
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL of the mock upstream (…/v1)")
    parser.add_argument("--tune-gc", action="store_true", help="the gateway's GC settings (server/gctune.py)")
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.http_port, args.grpc_port, args.upstream, args.tune_gc))


if __name__ == "__main__":
    main()
