"""The JSON API under /api/v1: bearer-token auth, JSON errors, the OpenAPI document."""
from flask import Blueprint, current_app, request
from flask_login import current_user

from crm.api import contract
from crm.errors import AuthError
from crm.http import authorize_view, csrf, login_manager

bp = Blueprint("api", __name__, url_prefix="/api")

# Reachable without a token.
PUBLIC_ENDPOINTS = {"api.login", "api.openapi"}


@login_manager.request_loader
def _load_api_user(req):
    """API calls authenticate with `Authorization: Bearer <token>` only, never the cookie."""
    if not req.path.startswith("/api/"):
        return None
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    from crm.services import users as user_service

    return user_service.resolve_token(token.strip(), "api")


@bp.before_request
def _require_token():
    if request.endpoint is None:
        return
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        raise AuthError("请先登录（缺少或无效的令牌）", code="unauthorized")
    if request.endpoint not in PUBLIC_ENDPOINTS:
        authorize_view(current_app.view_functions[request.endpoint])
    contract.enforce()


def init_app(app):
    """Register the API blueprint; it uses bearer tokens, so the cookie CSRF check does not apply."""
    from crm.api import auth, backups, cards, customers, openapi, reports  # noqa: F401 — the routes register themselves

    csrf.exempt(bp)
    app.register_blueprint(bp)
