"""gRPC plumbing around the servicers: lenient parsing, status details, health List, reflection v1.

Data flow:
- `add_generation_service` registers the generation servicer with request deserializers that never
  raise: bytes that are not a valid message (invalid UTF-8 in a string field, a corrupt encoding)
  become a `Malformed` marker, and the method answers INVALID_ARGUMENT with a plain message instead
  of grpc's UNKNOWN, a Python class name and an ERROR traceback in the log.
- `retry_details` packs a retry delay into `google.rpc.Status` (`google.rpc.RetryInfo` in its
  details), sent in the `grpc-status-details-bin` trailer the way grpc-status clients read it.
- `HealthServicer` adds `grpc.health.v1.Health/List` to grpc's asyncio health servicer.
- `enable_reflection` serves reflection as both `grpc.reflection.v1alpha` (grpcio-reflection's
  servicer) and `grpc.reflection.v1`: the two protos are the same messages under another package, so
  the same servicer answers v1 with identical bytes.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from grok.v1 import generation_pb2 as pb

#: The trailer that carries a serialized google.rpc.Status (what grpc-status clients parse).
STATUS_DETAILS_KEY = "grpc-status-details-bin"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


class Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, message_type: str, error: Exception) -> None:
        self.message = (
            f"the request is not a valid {message_type} message ({error}); check the client's encoding"
        )


def _lenient(cls: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except Exception as err:  # protobuf raises DecodeError, upb sometimes other errors
            return Malformed(cls.DESCRIPTOR.full_name, err)

    return parse


def _guard_unary(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await behavior(request, context)

    return handler


def _guard_stream(behavior: Callable[[Any, Any], AsyncIterator[Any]]) -> Callable[[Any, Any], Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        async for message in behavior(request, context):
            yield message

    return handler


def add_generation_service(servicer: Any, server: grpc.aio.Server) -> None:
    """Register every method of grok.v1.GenerationService with lenient request parsing."""
    service = pb.DESCRIPTOR.services_by_name["GenerationService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_cls = getattr(pb, method.input_type.name)
        response_cls = getattr(pb, method.output_type.name)
        behavior = getattr(servicer, method.name)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _guard_stream(behavior),
                request_deserializer=_lenient(request_cls),
                response_serializer=response_cls.SerializeToString,
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _guard_unary(behavior),
                request_deserializer=_lenient(request_cls),
                response_serializer=response_cls.SerializeToString,
            )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


def retry_details(code: grpc.StatusCode, message: str, retry_after: float) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata with a google.rpc.Status holding a RetryInfo of `retry_after` seconds."""
    whole = math.floor(retry_after)
    delay = duration_pb2.Duration(seconds=whole, nanos=int((retry_after - whole) * 1e9))
    detail = error_details_pb2.RetryInfo(retry_delay=delay)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    status.details.add().Pack(detail)
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc,name-defined]
    """grpc's asyncio health servicer plus `List` (every published service and its status)."""

    async def List(  # noqa: N802 (gRPC method names)
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        statuses = {
            name: health_pb2.HealthCheckResponse(status=status)
            for name, status in self._server_status.items()
        }
        return health_pb2.HealthListResponse(statuses=statuses)


def enable_reflection(names: tuple[str, ...], server: grpc.aio.Server) -> None:
    """Reflection v1alpha and v1 for `names` (plus both reflection services)."""
    every = (*names, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.aio.ReflectionServicer(every)  # type: ignore[attr-defined]
    for service_name in (reflection.SERVICE_NAME, REFLECTION_V1):
        handler = grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service_name, {"ServerReflectionInfo": handler}),)
        )
