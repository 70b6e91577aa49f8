"""Walking every route of the app with placeholder arguments (the access and login tests)."""
import re

from werkzeug.routing import IntegerConverter

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Placeholder ids that match nothing: the walk must not change real rows (its own login!).
PLACEHOLDERS = {"int": "999999", "default": "crm-backup-20000101-000000-manual.zip"}


def routes(app, logouts=False):
    """(endpoint, url, method, pattern) for every route but static files (and logouts, unless
    asked: a walk that logs in must not log itself out halfway)."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or (rule.endpoint.endswith("logout") and not logouts):
            continue
        values = {a: PLACEHOLDERS["int"] if isinstance(rule._converters[a], IntegerConverter)
                  else PLACEHOLDERS["default"] for a in rule.arguments}
        url = rule.build(values, append_unknown=False)[1]
        pattern = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(rule.methods & set(METHODS)):
            yield rule.endpoint, url, method, pattern
