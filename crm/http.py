"""What the pages (crm.web) and the JSON API (crm.api) share about a request: the login and
CSRF extensions, who is acting, the role and permission marks, the period, day and paging
arguments, file answers and the backup helpers. Neither package imports the other; both
import this."""
import functools
from urllib.parse import quote

from flask import Response, current_app, request, send_file
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect
from werkzeug.routing import IntegerConverter

from crm.errors import ValidationError
from crm.services import Actor, validate
from crm.services import users as user_service

login_manager = LoginManager()
csrf = CSRFProtect()

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: at most 10 digits, so a huge number is no page (404) rather
    than an overflow in the database driver (500). A length limit in the pattern, not a `max`
    check after matching, because werkzeug answers a failed converter check with a false 405
    when two rules share the path."""

    regex = r"[0-9]{1,10}"  # not \d: Python's takes "１" and "٣" (and int() reads them)


# --- who is acting, and may they -------------------------------------------------------------

def client_ip():
    """The peer's address (no proxy sits in front of waitress on a shop LAN)."""
    return request.remote_addr or ""


def actor():
    """The current user and their address, for services that audit."""
    user = current_user if current_user.is_authenticated else None
    return Actor(user=user, ip=client_ip())


def is_api_request():
    """True for /api/ paths, whose errors are JSON."""
    return request.path.startswith("/api/")


def _authorize(role=None, permissions=()):
    if role:
        user_service.require_role(current_user, role)
    for permission in permissions:
        user_service.require_permission(current_user, permission)


def authorize_view(view):
    """Check the current user against a view's marks, before the view runs (the API checks
    access this way before it checks the request against its document)."""
    _authorize(getattr(view, "required_role", None), getattr(view, "required_permissions", ()))


def admin_required(view):
    """Only admins may use this view; others get 403. The mark lets tests find every admin view."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        _authorize(role="admin")
        return view(*args, **kwargs)

    wrapped.required_role = "admin"
    return wrapped


def requires(*permissions):
    """The view needs these permissions (admins have all); the mark lets tests walk them."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            _authorize(permissions=permissions)
            return view(*args, **kwargs)

        wrapped.required_permissions = permissions
        return wrapped

    return decorate


# --- arguments --------------------------------------------------------------------------------

def period_arg():
    """The period in the query string (start, end, preset), checked; web and API alike."""
    from crm.services import statements

    args = request.args
    return statements.parse_period(args.get("start"), args.get("end"), args.get("preset"))


def statement_period(customer_id):
    """A customer's statement period in the query (start, end, preset — "all" included: since
    the first card); web and API alike."""
    from crm.services import statements

    args = request.args
    return statements.customer_period(customer_id, args.get("start"), args.get("end"),
                                      args.get("preset"))


def closing_args():
    """The daily closing's day and operator in the query string; web and API alike."""
    from crm.services import stats

    return stats.parse_day(request.args.get("day")), int_arg("operator_id")


def int_arg(name, default=None):
    """A whole-number query parameter; anything else is the default (a hand-edited address)."""
    return validate.ascii_int(request.args.get(name), default)


def int_form(form, name, default=None):
    """A whole-number form field; anything else is the default."""
    return validate.ascii_int(form.get(name), default)


# --- files ------------------------------------------------------------------------------------

def xlsx_response(data, filename):
    """An .xlsx download; the Chinese file name is sent RFC 5987-encoded."""
    return Response(data, mimetype=XLSX, headers={
        "Content-Disposition": f"attachment; filename=export.xlsx; filename*=UTF-8''{quote(filename)}"})


def pdf_response(data, filename):
    """A PDF shown in the browser (to print), its Chinese file name RFC 5987-encoded."""
    return Response(data, mimetype="application/pdf", headers={
        "Content-Disposition": f"inline; filename=document.pdf; filename*=UTF-8''{quote(filename)}"})


def statement_file(customer_id, extension):
    """The statement of the period in the query as .xlsx or .pdf: one answer, one file name,
    for the page and the API."""
    from crm.services import statement_export

    start, end = statement_period(customer_id)
    shop = current_app.config["SHOP_NAME"]
    name = statement_export.filename(customer_id, start, end, extension)
    if extension == "xlsx":
        return xlsx_response(statement_export.xlsx(shop, customer_id, start, end), name)
    return pdf_response(statement_export.pdf_bytes(shop, customer_id, start, end), name)


def receipt_file(record_id, recharge=False):
    """A consumption's (or, `recharge`, a recharge's) receipt as an 80 mm PDF; page and API."""
    from crm.services import receipts

    shop = current_app.config["SHOP_NAME"]
    if recharge:
        data, name = receipts.recharge_receipt_pdf(record_id, shop), f"recharge-receipt-{record_id}"
    else:
        data, name = receipts.receipt_pdf(record_id, shop), f"receipt-{record_id}"
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f"inline; filename={name}.pdf"})


def customer_list_file(filters):
    """The customer list under `filters` as Excel: one answer, one file name, page and API."""
    from crm.services import customers

    return xlsx_response(customers.export_xlsx(filters, current_app.config["SHOP_NAME"]),
                         customers.export_filename())


def import_template_file():
    """The blank import template, page and API."""
    from crm.services import customer_import

    return xlsx_response(customer_import.template(current_app.config["SHOP_NAME"]),
                         customer_import.TEMPLATE_FILENAME)


def chart_file(chart):
    """One chart's data for the period in the query as Excel, page and API."""
    from crm.services import stats

    start, end = period_arg()
    filename, data = stats.chart_xlsx(chart, start, end, current_app.config["SHOP_NAME"])
    return xlsx_response(data, filename)


def closing_file():
    """The daily closing of the day (and operator) in the query as Excel, page and API."""
    from crm.services import stats

    day, operator_id = closing_args()
    filename, data = stats.closing_xlsx(day, operator_id, current_app.config["SHOP_NAME"])
    return xlsx_response(data, filename)


def uploaded_file():
    """The request's `file` field as (file name, bytes); the same check for page and API. What
    the bytes are (an .xlsx, a backup zip) the service that reads them decides."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationError("请选择要上传的文件（表单字段 file）", code="missing_file", field="file")
    return upload.filename, upload.read()


def backup_folder():
    """The backup folder of this instance."""
    return current_app.config["BACKUP_DIR"]


def backup_file(name):
    """The backup file itself as a download (a backup's name only, never a path); page and API."""
    from crm.services import backups

    return send_file(backups.path_of(backup_folder(), name), as_attachment=True,
                     download_name=name, mimetype="application/zip")


def received_upload():
    """The backup file in the request's `file` field (with another PC's `recovery_key`, when it
    is one), kept and checked: (name, Checked); refused and not kept when it does not check out."""
    from crm.services import backups

    upload = request.files.get("file")
    return backups.receive_upload(backup_folder(), upload.filename if upload else "",
                                  upload.read() if upload else b"",
                                  request.form.get("recovery_key"))


def restore_with_confirmation(name, confirmation, recovery_key="", accept_unsigned=False,
                              rename_clashes=False):
    """Restore after the shop's name was typed; keep another PC's ledger key if one was given;
    an old unsigned backup only when acknowledged. Shared by the page and the API."""
    from crm.services import backups

    shop = current_app.config["SHOP_NAME"]
    backups.check_confirmation(shop, confirmation)
    result = backups.restore(backup_folder(), name, actor=actor(), shop_name=shop,
                             key=recovery_key, accept_unsigned=accept_unsigned,
                             rename_clashes=rename_clashes)
    backups.check_later(result.pop("safety_path"))
    return result
