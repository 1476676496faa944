"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` environment variables.

Tracing is on when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and ``OTEL_SDK_DISABLED`` is not true; spans then go over
OTLP/HTTP through a batch processor, off the request path. Otherwise the API's no-op tracer is used:
no exporter, no thread, no error logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace import TracerProvider as ApiTracerProvider

from service import __version__


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def provider_from_environment(environ: Mapping[str, str] = os.environ) -> ApiTracerProvider:
    """A tracer provider for this process: exporting, or no-op when tracing is not configured. Sampling
    follows ``OTEL_TRACES_SAMPLER`` (default: parent-based always-on)."""
    if not tracing_enabled(environ):
        return NoOpTracerProvider()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.version": __version__})  # + OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "okta-ldap-hook"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def shutdown(provider: ApiTracerProvider) -> None:
    """Flush queued spans; called when the server stops."""
    if isinstance(provider, TracerProvider):
        provider.shutdown()
