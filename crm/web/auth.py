"""Login, logout and the first-run setup page."""
import ipaddress
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from crm.errors import CrmError, ValidationError
from crm.http import actor, client_ip
from crm.services import users as user_service
from crm.web import flash_error

bp = Blueprint("auth", __name__)


def _safe_next(target):
    """Only same-site paths may be redirected to after login: a path of printable characters
    (browsers drop tabs and line breaks: "/%09/evil.example" would become "//evil.example"),
    starting with one slash, naming no scheme or host."""
    if not target or not target.isprintable() or any(c.isspace() for c in target):
        return url_for("main.index")
    parts = urlsplit(target)
    if (target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target
            and not parts.scheme and not parts.netloc):
        return target
    return url_for("main.index")


def _is_loopback():
    try:
        return ipaddress.ip_address(client_ip()).is_loopback
    except ValueError:
        return False


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; on POST check the password and start a session."""
    if not user_service.has_users():
        return redirect(url_for("auth.setup"))
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    status = 200
    if request.method == "POST":
        try:
            user = user_service.authenticate(actor(), request.form.get("username", ""),
                                             request.form.get("password", ""))
        except CrmError as error:
            flash_error(error)
            status = error.status
        else:
            _start_session(user)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", username=request.form.get("username", "")), status


def _start_session(user):
    """A fresh session cookie for a fresh server-side login token."""
    session.clear()
    user.session_token = user_service.issue_token(
        user, "web", ip=client_ip(), user_agent=request.headers.get("User-Agent", ""))
    login_user(user)


@bp.route("/logout", methods=["POST"])
def logout():
    """End this login on the server and in the browser."""
    user_service.revoke_token(current_user.get_id())
    logout_user()
    session.clear()
    flash("您已安全退出", "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """First run: create the owner's admin account, from this PC or with the console's code."""
    if user_service.has_users():
        return redirect(url_for("auth.login"))
    need_code = not _is_loopback()
    status = 200
    if request.method == "POST":
        refusal = need_code and user_service.check_setup_code(
            request.form.get("setup_code", ""), current_app.config["SETUP_CODE"])
        if refusal:
            flash(refusal.message, "danger")
            status = refusal.status
        elif request.form.get("password") != request.form.get("password2"):
            flash("两次输入的密码不一致", "danger")
            status = 422
        else:
            try:
                user = user_service.create_first_admin(
                    actor(), request.form.get("username", ""), request.form.get("password", ""),
                    display_name=request.form.get("display_name", ""))
            except CrmError as error:
                flash_error(error)
                status = error.status
            else:
                _start_session(user)
                flash("管理员账号已创建，欢迎使用！", "success")
                return redirect(url_for("main.index"))
    return render_template("auth/setup.html", need_code=need_code, form=request.form), status


@bp.route("/account/password", methods=["GET", "POST"])
def password():
    """Every user changes their own password here; their other logins end."""
    status = 200
    if request.method == "POST":
        form = request.form
        try:
            if form.get("password") != form.get("password2"):
                raise ValidationError("两次输入的新密码不一致", code="password_mismatch")
            user_service.change_own_password(actor(), form.get("old_password", ""),
                                             form.get("password", ""),
                                             keep_token=current_user.get_id())
        except CrmError as error:
            flash_error(error)
            status = error.status
        else:
            flash("密码已修改", "success")
            return redirect(url_for("main.index"))
    return render_template("auth/password.html"), status
