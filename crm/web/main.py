"""The home page."""
from flask import Blueprint, current_app, render_template
from flask_login import current_user

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    """The home page: greeting, and for admins the problems the monitoring page found."""
    problems = []
    if current_user.is_admin:
        from crm.services import monitor

        problems = monitor.status(current_app.config)["problems"]
    return render_template("main/index.html", problems=problems)
