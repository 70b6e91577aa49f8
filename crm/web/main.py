"""The home page."""
from flask import Blueprint, render_template

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    """The home page: greeting and the way into each module."""
    return render_template("main/index.html")
