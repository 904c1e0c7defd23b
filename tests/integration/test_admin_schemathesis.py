"""Schemathesis against the admin API's own OpenAPI document (issue 7 §6).

The document is loaded from a running gateway (``GET /admin/openapi.json``) and every operation
gets generated requests: schema-valid ones (positive) and schema-violating ones (negative).
Checked: no 5xx; every status, content type, header and body is one the document declares;
schema-violating requests are refused; other methods on a route get 405; a missing required
header is refused.

Left out, with reasons: ``positive_data_acceptance`` (a valid-looking request may still be
refused for what a schema cannot say: a name already taken, "name the key by one of these
three fields", "nothing to change"), ``ignored_auth`` (the admin token goes in as a plain
header here; the token is tested in test_admin_api.py), and the stateful checks.

The gateway is one of this module's own: generated requests create, change and revoke keys
and partners, which must not disturb the session's shared gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import Case, GenerationMode, checks

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import ADMIN_TOKEN, Gateway, start_gateway
from tests.integration.test_admin_api import ROUTES as ADMIN_ROUTES
from tests.integration.test_bad_input_support import no_gateway_errors

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.unsupported_method,
    checks.missing_required_header,
]
EXAMPLES = 40  # per operation and mode
HEADERS = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def admin_gateway(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_gateway(Path(tmp_path_factory.mktemp("schemathesis")), upstream)
    yield gateway
    gateway.stop()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_admin_api_matches_its_openapi_document(
    admin_gateway: Gateway, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{admin_gateway.url}/admin/openapi.json", timeout=10)
    # An over-long query string is refused by the HTTP layer (414, documented): a rejection.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "414"]
    operations = [result.ok() for result in schema.get_all_operations()]
    listed = {(op.method.upper(), op.path) for op in operations}
    # Schemathesis leaves out the document's own path.
    expected = ADMIN_ROUTES - {("GET", "/admin/openapi.json")}
    assert listed >= expected, sorted(expected - listed)

    failures: list[str] = []
    with no_gateway_errors(admin_gateway):
        for operation in operations:

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,  # reproducible in CI
                database=None,  # no example database in the working tree
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def exercise(case: Case) -> None:
                # An empty list or object in a query parameter is sent as no parameter at
                # all, and an empty string counts as absent (the document says
                # allowEmptyValue): on the wire such a "negative" case is a valid request.
                assume(mode is GenerationMode.POSITIVE or not _blank_query(case))
                case.call_and_validate(
                    base_url=admin_gateway.url, headers=HEADERS, checks=CHECKS, timeout=10
                )

            try:
                exercise()
            except Exception as failure:  # report every operation, not only the first
                failures.append(f"{operation.method.upper()} {operation.path}: {failure}")
    assert not failures, "\n\n".join(failures)


def _blank_query(case: Case) -> bool:
    return any(value in ("", [], {}) for value in (case.query or {}).values())
