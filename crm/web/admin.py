"""Admin pages: system users."""
from flask import Blueprint, flash, redirect, render_template, request, url_for

from crm.errors import CrmError
from crm.models import User
from crm.services import users as user_service
from crm.web import actor, admin_required

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
        flash(error.message, "danger")
        return render_template("admin/users.html", users=user_service.list_users(),
                               roles=User.ROLES, form=form), error.status
    flash(f"已创建用户 {user.username}", "success")
    return redirect(url_for("admin.users"))
