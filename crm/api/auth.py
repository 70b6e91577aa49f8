"""API login, logout, the current user, and system users."""
from flask import jsonify, request
from flask_login import current_user

from crm.api import bp, json_body, text_field
from crm.errors import ValidationError
from crm.http import actor, admin_required, client_ip, int_arg, period_arg
from crm.services import users as user_service


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


@bp.route("/v1/users/<int:user_id>", methods=["PATCH"])
@admin_required
def update_user(user_id):
    """Change role, active, display_name or permissions ({name: true/false}) (admin)."""
    data = json_body()
    permissions = data.get("permissions")
    if permissions is not None and not isinstance(permissions, dict):
        raise ValidationError("permissions 必须是对象", code="invalid_type", field="permissions")
    active = data.get("active")
    if active is not None and not isinstance(active, bool):
        raise ValidationError("active 必须是 true 或 false", code="invalid_type", field="active")
    user = user_service.update_user(
        actor(), user_id, role=text_field(data, "role", required=False) or None, active=active,
        display_name=(text_field(data, "display_name", required=False)
                      if "display_name" in data else None), permissions=permissions)
    return jsonify({**user_json(user), "permissions": user_service.permissions_of(user)})


@bp.route("/v1/users/<int:user_id>/password", methods=["POST"])
@admin_required
def reset_user_password(user_id):
    """Set a new password for a user (admin); the user's logins end."""
    user_service.reset_password(actor(), user_id, text_field(json_body(), "password"))
    return jsonify(ok=True)


@bp.route("/v1/me/password", methods=["POST"])
def change_my_password():
    """Change one's own password (old_password, password); other logins end."""
    data = json_body()
    user_service.change_own_password(actor(), text_field(data, "old_password"),
                                     text_field(data, "password"),
                                     keep_token=current_user.get_id())
    return jsonify(ok=True)


@bp.route("/v1/audit")
@admin_required
def audit_log():
    """The audit log, newest first: username?, action?, start?, end?, page?."""
    from crm.services import audit

    args = request.args
    start, end = period_arg()
    rows, total = audit.search(username=args.get("username", ""), action=args.get("action", ""),
                               start=start, end=end, page=int_arg("page", 1))
    return jsonify(total=total, items=[
        {"id": r.id, "time": r.created_at.isoformat(" "), "username": r.username, "ip": r.ip,
         "action": r.action, "object_type": r.object_type, "object_id": r.object_id,
         "detail": r.detail} for r in rows])


@bp.route("/v1/tokens")
@admin_required
def list_tokens():
    """Logins in force (browser sessions and API tokens), newest first (admin)."""
    return jsonify(items=[{"id": t.id, "username": t.user.username, "kind": t.kind, "ip": t.ip,
                           "created_at": t.created_at.isoformat(" "),
                           "last_used_at": t.last_used_at.isoformat(" "),
                           "expires_at": t.expires_at.isoformat(" ")}
                          for t in user_service.live_tokens()])


@bp.route("/v1/tokens/<int:token_id>", methods=["DELETE"])
@admin_required
def revoke_token(token_id):
    """End one login now (admin)."""
    user_service.revoke_token_by_id(actor(), token_id)
    return jsonify(ok=True)
