"""Every answer of the API in the suite is checked against the document it serves (issue 18.2):
the test client used by the tests validates each /api/ response — its status must be one the
operation declares, and a JSON body must fit the declared schema — so an answer that drifts
from the document fails the test that received it, not only schemathesis' random requests."""
import re
from functools import lru_cache

from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from crm.api.contract import _to_json_schema
from crm.api.openapi import document


@lru_cache(maxsize=1)
def _operations():
    """[(path regex, method, {status: validator or None})] from the document."""
    doc = document()
    components = doc["components"]["schemas"]
    found = []
    for path, item in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$")
        for method, operation in item.items():
            if method == "parameters":
                continue
            answers = {}
            for status, response in operation.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                answers[status] = (Draft202012Validator(_to_json_schema(schema, components))
                                   if schema else None)
            found.append((pattern, method.upper(), answers))
    return found


def check_answer(method, path, response):
    """Raise AssertionError when `response` to `method path` is not what the document says."""
    if not path.startswith("/api/") or path == "/api/openapi.json":
        return
    matches = [(p, a) for p, m, a in _operations() if m == method and p.match(path)]
    if not matches:
        return  # not an operation (a 404 or 405 of the router): other tests cover those
    # A literal path (…/export.xlsx) wins over a templated one (…/{customer_id}).
    pattern, answers = min(matches, key=lambda found: found[0].pattern.count("[^/]+"))
    status = str(response.status_code)
    assert status in answers, \
        f"{method} {path} answered {status}, which the document does not declare ({sorted(answers)})"
    validator = answers[status]
    if validator is not None and response.mimetype == "application/json":
        body = response.get_json()
        problems = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not problems, (f"{method} {path} {status}: the answer does not fit the document: "
                              f"{problems[0].message} at {list(problems[0].absolute_path)}")


class CheckedClient(FlaskClient):
    """The test client, checking every API answer against the document."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        request = response.request
        check_answer(request.method, request.path, response)
        return response
