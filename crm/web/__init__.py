"""The browser UI: login handling, the role check, error pages and security headers."""
import uuid

from flask import flash, g, jsonify, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from peewee import InterfaceError, OperationalError

from crm.db import is_busy
from crm.errors import CrmError, Unavailable
from crm.http import XLSX, actor, csrf, is_api_request, login_manager
from crm.money import format_fen, format_yuan
from crm.services import audit, hold, page_window
from crm.services import users as user_service

# Endpoints reachable without a login. Everything else needs one (default deny).
PUBLIC_ENDPOINTS = {"static", "auth.login", "auth.setup", "healthz"}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")

DOWNLOADS = {XLSX: "export", "application/pdf": "export", "application/zip": "backup.download"}
NOT_AUDITED = {"cards.receipt_pdf", "api.receipt_pdf", "customers.import_template",
               "api.customer_import_template"}


@login_manager.user_loader
def _load_user(token):
    if is_api_request():
        return None  # the API takes bearer tokens only: a cookie must not authorise an API call
    return user_service.resolve_token(token, "web")


@login_manager.unauthorized_handler
def _unauthorized():
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def init_app(app):
    """Register the web blueprints and the request-wide rules."""
    login_manager.init_app(app)
    login_manager.session_protection = None  # the server-side token is the protection

    from crm.web import admin, auth, backups, cards, customer_types, customers, main, menu, reports

    for blueprint in (auth.bp, main.bp, admin.bp, customers.bp, customer_types.bp, cards.bp,
                      reports.bp, backups.bp):
        app.register_blueprint(blueprint)

    app.jinja_env.filters["yuan"] = format_yuan
    app.jinja_env.filters["fen"] = format_fen
    app.jinja_env.globals["can"] = lambda permission: user_service.permissions_of(
        current_user if current_user.is_authenticated else None).get(permission, False)
    app.jinja_env.globals["menu"] = menu
    app.jinja_env.globals["page_window"] = page_window
    app.jinja_env.globals["query_args"] = query_args
    # Each money form carries a fresh idempotency key, made when the form is drawn.
    app.jinja_env.globals["new_key"] = lambda: uuid.uuid4().hex

    @app.before_request
    def _refuse_changes_while_restoring():
        # Anything that changes data waits for a restore to finish: refused at once, before it
        # could queue behind the restore's locks (the money service checks again, atomically).
        if request.method not in SAFE_METHODS and hold.held():
            raise Unavailable(hold.MESSAGE, code="restore_in_progress")

    @app.before_request
    def _require_login():
        if request.endpoint in PUBLIC_ENDPOINTS or is_api_request():
            return None
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        return None

    # Registered after the login check, so that an anonymous POST goes to the login page first.
    csrf.init_app(app)

    @app.after_request
    def _audit_downloads(response):
        # Every file that carries the shop's data out (exports, statements, backups) leaves an
        # audit row, from the page or the API alike; receipts and the blank template do not.
        kind = DOWNLOADS.get(response.mimetype)
        # 206: a range request of a backup carries the file out just as well.
        if kind and response.status_code in (200, 206) and request.endpoint not in NOT_AUDITED:
            from crm.db import db

            with db.atomic():
                audit.record(actor(), kind, request.endpoint or "",
                             ",".join(str(v) for v in (request.view_args or {}).values()),
                             path=request.full_path.rstrip("?")[:300])
        return response

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        if response.status_code == 503:  # every 503 of ours is a moment's pause: try again soon
            response.headers.setdefault("Retry-After", str(Unavailable.retry_after))
        return response

    @app.errorhandler(CrmError)
    def _crm_error(error):
        return error_response(error.message, error.status, error.code)

    @app.errorhandler(CSRFError)
    def _csrf_error(error):
        return error_response("页面已过期或来源不明，请刷新页面后重试", 400, "csrf_failed")

    for status, (code, message) in HTTP_ERRORS.items():
        app.register_error_handler(
            status, lambda error, s=status, c=code, m=message: _http_error(error, s, c, m))

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_down(error):
        # Rendering must not look the user up again (Flask-Login's template context would).
        g._login_user = login_manager.anonymous_user()
        if is_busy(error):
            app.logger.warning("database busy: %s", error)
            return error_response("系统繁忙：数据正被其他操作占用，本次操作未完成，请稍后重试", 503,
                                  "database_busy")
        app.logger.exception("database error")
        return error_response("数据库暂时无法连接，请稍后刷新重试", 503, "database_unavailable")

    @app.route("/healthz")
    def healthz():
        """200 when the app and its database answer, 503 when the database does not."""
        from crm.db import db

        try:
            db.execute_sql("SELECT 1")
        except Exception:  # noqa: BLE001 — any failure means unhealthy
            return {"status": "database_unavailable", "app": "crm"}, 503
        return {"status": "ok", "app": "crm"}


HTTP_ERRORS = {
    400: ("bad_request", "请求格式不正确"),
    401: ("unauthorized", "请先登录"),
    403: ("forbidden", "您没有权限访问此页面"),
    404: ("not_found", "页面不存在"),
    405: ("method_not_allowed", "不支持的请求方式"),
    413: ("too_large", "上传的内容太大"),
    500: ("server_error", "系统出错了，请稍后重试；如果一再出现，请联系管理员"),
}


def _http_error(error, status, code, message):
    """Werkzeug's HTTP errors in our format, keeping the headers HTTP requires (a 405's Allow)."""
    response = make_response(error_response(message, status, code))
    valid_methods = getattr(error, "valid_methods", None)
    if valid_methods:
        response.headers["Allow"] = ", ".join(sorted(valid_methods))
    return response


def query_args(**changes):
    """This page's query arguments for a link to a variant of it (another page, sort, export):
    names starting with "_" are left out — url_for takes _method, _anchor, _external … as its
    own (a crafted ?_method=PUT was a 500, ?_external=1 changed every link)."""
    args = {k: v for k, v in request.args.items() if not k.startswith("_")}
    args.update(changes)
    return args


def error_response(message, status, code):
    """One error answer: JSON {"error": {code, message}} under /api/, a Chinese page elsewhere."""
    if request.path == "/healthz":  # monitors read JSON, even when the database is down
        return jsonify(status=code, app="crm", message=message), status
    if is_api_request():
        return jsonify(error={"code": code, "message": message}), status
    return render_template("errors/error.html", message=message, status=status), status


def flash_error(error):
    """Show a CrmError's message on the next page (or on this one, when it is rendered)."""
    flash(error.message, "danger")
