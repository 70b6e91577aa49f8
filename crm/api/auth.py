"""API login, logout, the current user, and system users."""
from flask import jsonify, request
from flask_login import current_user

from crm.api import bp, json_body, text_field
from crm.services import users as user_service
from crm.web import actor, admin_required, client_ip


def user_json(user):
    """A user as the API shows it (never the password hash)."""
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "role": user.role, "active": user.active}


@bp.route("/v1/login", methods=["POST"])
def login():
    """Exchange a user name and password for a bearer token."""
    data = json_body()
    user = user_service.authenticate(actor(), text_field(data, "username"),
                                     text_field(data, "password"))
    token = user_service.issue_token(user, "api", ip=client_ip(),
                                     user_agent=request.headers.get("User-Agent", ""))
    return jsonify(token=token, role=user.role, username=user.username)


@bp.route("/v1/logout", methods=["POST"])
def logout():
    """Revoke the token this request carries."""
    user_service.revoke_token(current_user.get_id())
    return jsonify(ok=True)


@bp.route("/v1/me")
def me():
    """The user the token belongs to."""
    return jsonify(user_json(current_user))


@bp.route("/v1/users")
@admin_required
def list_users():
    """All system users (admin)."""
    return jsonify(items=[user_json(u) for u in user_service.list_users()])


@bp.route("/v1/users", methods=["POST"])
@admin_required
def create_user():
    """Create a system user (admin)."""
    data = json_body()
    user = user_service.create_user(actor(), text_field(data, "username"),
                                    text_field(data, "password"),
                                    role=text_field(data, "role", required=False) or "operator",
                                    display_name=text_field(data, "display_name", required=False))
    return jsonify(user_json(user)), 201
