"""rclpy's parameter services, made safe against malformed requests.

rclpy's ParameterService converts each request's ParameterValue with ``Parameter.from_parameter_msg``,
which raises for a type it does not know (any client on the domain can send type 99): the exception
leaves the executor and kills the node. This subclass answers such a request with a refusal that
says why (successful=False, the reason), logs it once per service every few seconds, and keeps serving.
"""
from __future__ import annotations

import time

from rcl_interfaces.msg import ListParametersResult, SetParametersResult
from rclpy.parameter_service import ParameterService

_LOG_EVERY_S = 5.0


class SafeParameterService(ParameterService):
    """Create with the node after ``Node(..., start_parameter_services=False)``."""

    def __init__(self, node):
        self._last_log: dict = {}
        super().__init__(node)

    def _refused(self, what: str, exc: Exception) -> str:
        reason = f"malformed {what} request refused: {type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._last_log.get(what, -1e9) >= _LOG_EVERY_S:
            self._last_log[what] = now
            self._get_node().get_logger().warning(reason)
        return reason

    def _set_parameters_callback(self, request, response):
        # Each parameter on its own, as rclpy does, so one malformed value refuses only itself.
        for msg in request.parameters:
            sub = type(request)(parameters=[msg])
            try:
                result = super()._set_parameters_callback(sub, type(response)()).results[0]
            except Exception as exc:  # noqa: BLE001 - a bad request must not end the node
                result = SetParametersResult(successful=False, reason=self._refused("set_parameters", exc))
            response.results.append(result)
        return response

    def _set_parameters_atomically_callback(self, request, response):
        try:
            return super()._set_parameters_atomically_callback(request, response)
        except Exception as exc:  # noqa: BLE001
            response.result = SetParametersResult(successful=False, reason=self._refused("set_parameters_atomically", exc))
            return response


def _guarded(name: str, what: str, empty):
    """rclpy's callback ``name``, answering ``empty(response)`` and logging instead of raising."""
    base = getattr(ParameterService, name)

    def callback(self, request, response):
        try:
            return base(self, request, response)
        except Exception as exc:  # noqa: BLE001 - a bad request must not end the node
            self._refused(what, exc)
            empty(response)
            return response

    return callback


for _name, _what, _empty in (
        ("_describe_parameters_callback", "describe_parameters", lambda r: setattr(r, "descriptors", [])),
        ("_get_parameters_callback", "get_parameters", lambda r: setattr(r, "values", [])),
        ("_get_parameter_types_callback", "get_parameter_types", lambda r: setattr(r, "types", [])),
        ("_list_parameters_callback", "list_parameters", lambda r: setattr(r, "result", ListParametersResult()))):
    setattr(SafeParameterService, _name, _guarded(_name, _what, _empty))
