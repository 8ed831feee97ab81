"""IncrementalAlterConfigs v0 (API key 44, Kafka ≥ 2.3), built from aiokafka's protocol classes: aiokafka has
no such request, and its AlterConfigs replaces a topic's whole override set."""

from __future__ import annotations

from typing import Any

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

#: ``config_operation`` SET (1 DELETE, 2 APPEND, 3 SUBTRACT).
OP_SET = 0

# aiokafka ships no type information: its protocol base classes are Any to mypy.


class IncrementalAlterConfigsResponse_v0(Response):  # type: ignore[misc]  # (aiokafka naming)
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("responses", Array(("error_code", Int16), ("error_message", String("utf-8")),
                            ("resource_type", Int8), ("resource_name", String("utf-8")))),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):  # type: ignore[misc]
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        ("resources", Array(("resource_type", Int8), ("resource_name", String("utf-8")),
                            ("configs", Array(("name", String("utf-8")), ("config_operation", Int8),
                                              ("value", String("utf-8")))))),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigsRequest(Request[IncrementalAlterConfigsRequest_v0]):  # type: ignore[misc]
    """Set (operation SET) only the given configs of each resource; the others keep their overrides."""

    API_KEY = 44

    def __init__(self, resources: list[tuple[int, str, list[tuple[str, int, str]]]]) -> None:
        self._resources = resources

    def build(self, request_struct_class: type[Any]) -> Any:
        return request_struct_class(self._resources, False)
