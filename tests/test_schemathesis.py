"""Schemathesis over every operation of /api/openapi.json, in-process (WSGI), on SQLite and
MariaDB, as an admin and as an operator: no 5xx, and every status, header, content type and body
matches the document. Examples per operation are bounded so CI stays fast; raise them locally
with CRM_FUZZ_EXAMPLES=200.

Every case gets a fresh token for its user (created through the service, as the login would), and
the user is made active again first, so a fuzzed logout, password reset or disable does not end
the run's coverage. The coverage phase (boundary values and invalid data for every constraint of
the document) is deterministic and runs for the admin; the random phase runs for both roles.
"""
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from crm.models import User
from crm.services import cards, customer_types, recharge_rules
from crm.services import users as user_service
from tests.ledger_helpers import key, make_shop, run

EXAMPLES = int(os.environ.get("CRM_FUZZ_EXAMPLES", "6"))


@pytest.fixture(params=["admin", "operator"])
def fuzz_user(request):
    return request.param


@pytest.fixture
def api_schema(app, fuzz_user):
    """The app's own document, loaded through the app, with a shop that has something in it."""
    shop = make_shop(app)

    def seed():
        customer_types.create_type(shop.admin, {"name": "普通客户", "discount": ""})
        card = cards.open_card(shop.operator, shop.customer_id, key(), amount=50000, bonus=500)
        cards.consume(shop.operator, card.card_id, key(), 1200)
        recharge_rules.create_rule(shop.admin, 100000, 10000)

    run(app, seed)
    app.config["FUZZ_USER"] = shop.admin.user if fuzz_user == "admin" else shop.operator.user
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    schema.config.phases.coverage.enabled = fuzz_user == "admin"
    seen = app.config["FUZZ_SEEN"] = []
    yield schema
    # The run really was authenticated and reached the features, not 401s all the way through.
    succeeded = {label for label, status in seen if status < 300}
    assert len(succeeded) >= (30 if fuzz_user == "admin" else 5), sorted(succeeded)
    if fuzz_user == "operator":
        assert any(status == 403 for _, status in seen)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.auth(refresh_interval=None)
class FreshToken:
    """A new token for every case, for the fuzzing user, who is made active again first."""

    def get(self, case, context):
        app = context.app
        user = app.config["FUZZ_USER"]

        def issue():
            User.update(active=True).where(User.id == user.id).execute()
            return user_service.issue_token(User.get_by_id(user.id), "api")

        return run(app, issue)

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
          suppress_health_check=list(HealthCheck))
def test_api_matches_its_document(case):
    """Every operation: the response is documented and never a server error. (A schema-valid
    request may still be refused by a business rule, e.g. too little money: 409/422 are fine.)"""
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    case.operation.schema.app.config["FUZZ_SEEN"].append((case.operation.label,
                                                          response.status_code))
