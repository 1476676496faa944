"""Okta's own inline-hook OpenAPI excerpt (tests/data/okta-inline-hook-spec.json): its example
requests, and its response schemas to validate our answers against."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

#: The inline-hook part of Okta's management OpenAPI spec (okta/okta-management-openapi-spec,
#: dist/2026.06.2), kept in the repo so the contract tests run anywhere.
SPEC_PATH = Path(__file__).resolve().parent / "data" / "okta-inline-hook-spec.json"

RESPONSE_SCHEMAS = {
    "registration": "RegistrationResponse",
    "token": "TokenHookResponse",
    "saml": "SAMLHookResponse",
    "user_import": "UserImportResponse",
    "password_import": "PasswordImportResponse",
}

#: The example request of each supported hook type (Okta's examples, unmodified).
REQUEST_EXAMPLES = {
    "registration": "ProfileEnrollmentRequest",
    "registration_progressive": "ProgressiveProfileRequest",
    "token": "TokenPayLoadExample",
    "saml": "SAMLPayLoadExample",
    "user_import": "UserImportPayloadExample",
    "password_import": "PasswordImportPayloadExample",
}


@cache
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def example(name: str) -> dict[str, Any]:
    return copy.deepcopy(spec()["components"]["examples"][REQUEST_EXAMPLES.get(name, name)]["value"])


@cache
def _amended_spec() -> dict[str, Any]:
    """The spec with one documented correction: token patch values may be arrays (Okta's reference,
    contract note §6.2: "value: string/number/object/array"; its own AppendArray example patches array
    claims), but the schema's ``oneOf`` lists only string, integer and object."""
    document = copy.deepcopy(spec())
    token = document["components"]["schemas"]["TokenHookResponse"]
    value = token["properties"]["commands"]["items"]["properties"]["value"]["items"]["properties"]["value"]
    value["oneOf"].append({"type": "array", "items": {"type": "string"}})
    return document


def registration_for(email: str) -> dict[str, Any]:
    """Okta's self-service registration example, for someone else's email."""
    event = example("registration")
    event["data"]["userProfile"]["email"] = email
    return event


def validate_response(hook_type: str, body: dict[str, Any]) -> None:
    """Raise if ``body`` does not validate against Okta's response schema for ``hook_type``. Okta's
    schemas allow any other top-level key, so unknown keys are also refused here: Okta answers a body it
    cannot deserialize by skipping the hook."""
    unknown = set(body) - {"commands", "error", "debugContext"}
    assert not unknown, f"keys Okta does not know: {unknown}"
    document = _amended_spec()
    registry: Registry = Registry().with_resource("okta-spec", Resource.opaque(document))
    schema = {"$ref": f"okta-spec#/components/schemas/{RESPONSE_SCHEMAS[hook_type]}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)
