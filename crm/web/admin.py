"""Admin pages: system users."""
from flask import Blueprint, flash, redirect, render_template, request, url_for

from crm.errors import CrmError
from crm.http import actor, admin_required, int_arg, period_arg
from crm.models import User
from crm.services import audit_text, paging
from crm.services import users as user_service
from crm.web import flash_error

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/users")
@admin_required
def users():
    """List the system users."""
    return render_template("admin/users.html", users=user_service.list_users(), roles=User.ROLES)


@bp.route("/users", methods=["POST"])
@admin_required
def create_user():
    """Create a system user."""
    form = request.form
    try:
        user = user_service.create_user(actor(), form.get("username", ""), form.get("password", ""),
                                        role=form.get("role", "operator"),
                                        display_name=form.get("display_name", ""))
    except CrmError as error:
        flash_error(error)
        return render_template("admin/users.html", users=user_service.list_users(),
                               roles=User.ROLES, form=form), error.status
    flash(f"已创建用户 {user.username}", "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@admin_required
def edit_user(user_id):
    """Change a user's name, role, state and permissions."""
    user = user_service.get_user(user_id)
    if request.method == "POST":
        form = request.form
        try:
            user_service.update_user(
                actor(), user_id, role=form.get("role"), active=form.get("active") == "1",
                display_name=form.get("display_name", ""),
                permissions={p: form.get(f"perm_{p}") == "1" for p in user_service.PERMISSIONS})
        except CrmError as error:
            flash_error(error)
            return _edit_page(user, error.status)
        flash("已保存", "success")
        return redirect(url_for("admin.edit_user", user_id=user_id))
    return _edit_page(user)


def _edit_page(user, status=200):
    return render_template("admin/user.html", user=user, roles=User.ROLES,
                           permissions=user_service.PERMISSIONS,
                           granted=user_service.permissions_of(user)), status


@bp.route("/users/<int:user_id>/password", methods=["POST"])
@admin_required
def reset_password(user_id):
    """Set a new password for a user (their logins end)."""
    user = user_service.get_user(user_id)
    try:
        user_service.reset_password(actor(), user_id, request.form.get("password", ""))
    except CrmError as error:
        flash_error(error)
        return _edit_page(user, error.status)
    flash(f"已重设 {user.username} 的密码", "success")
    return redirect(url_for("admin.edit_user", user_id=user_id))


@bp.route("/audit")
@admin_required
def audit_log():
    """The audit log with filters by user, action and period."""
    from crm.services import audit as audit_service

    start, end = period_arg()
    rows, total = audit_service.search(username=request.args.get("username", ""),
                                       action=request.args.get("action", ""), start=start,
                                       end=end, page=int_arg("page", 1))
    page, pages = paging(total, int_arg("page", 1), audit_service.PER_PAGE)
    return render_template("admin/audit.html", rows=rows, total=total, start=start, end=end,
                           page=page, pages=pages, actions=audit_service.ACTIONS,
                           described=audit_text.describe(rows), users=user_service.list_users())


@bp.route("/monitor")
@admin_required
def monitor():
    """数据监控: database, durability, backups, ledger check, disk space, uptime."""
    from flask import current_app

    from crm.services import monitor as monitor_service

    return render_template("admin/monitor.html", s=monitor_service.status(current_app.config))


@bp.route("/tokens")
@admin_required
def tokens():
    """Logins in force: browser sessions and API tokens, with a button to end each."""
    return render_template("admin/tokens.html", tokens=user_service.live_tokens())


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@admin_required
def revoke_token(token_id):
    """End one login now."""
    user_service.revoke_token_by_id(actor(), token_id)
    flash("已注销该登录", "success")
    return redirect(url_for("admin.tokens"))


@bp.route("/api-docs")
@admin_required
def api_docs():
    """接口文档: the OpenAPI document in Swagger UI (vendored, under the site's strict CSP)."""
    return render_template("admin/api_docs.html")
