"""The home page: the 工作台."""
from flask import Blueprint, current_app, render_template
from flask_login import current_user

from crm.services import ledger, workbench
from crm.services import users as user_service

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    """工作台: today's figures (the shop's for those who may see the statistics, the clerk's
    own for everyone), shortcuts to the everyday tasks, and for admins what needs attention."""
    problems = []
    if current_user.is_admin:
        from crm.services import monitor

        problems = monitor.problems(current_app.config)
    shop = None
    if user_service.permissions_of(current_user).get("statistics"):
        shop = workbench.today()
    return render_template("main/index.html", problems=problems, shop=shop,
                           mine=workbench.today(current_user.id), methods=ledger.PAYMENT_METHODS)
