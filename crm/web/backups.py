"""备份与恢复 (admin): back up now, list, download, upload, restore with a typed confirmation."""
from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from crm.errors import CrmError
from crm.http import (
    actor,
    admin_required,
    backup_file,
    backup_folder,
    received_upload,
    restore_with_confirmation,
)
from crm.services import audit, backups, ledger
from crm.services import users as user_service
from crm.web import flash_error

bp = Blueprint("backups", __name__, url_prefix="/admin/backups")


def _page(status=200, **context):
    return render_template("backups/index.html", items=backups.list_backups(backup_folder()),
                           kinds=backups.KINDS, folder=backup_folder(),
                           copy_folder=current_app.config.get("BACKUP_COPY_DIR", ""),
                           fingerprint=ledger.key_fingerprint(), **context), status


@bp.route("")
@admin_required
def index():
    """The backups with their manifests, and the restore forms."""
    return _page()


@bp.route("", methods=["POST"])
@admin_required
def create():
    """立即备份."""
    try:
        info = backups.create(backup_folder(), "manual", current_app.config["SHOP_NAME"], actor(),
                              current_app.config.get("BACKUP_COPY_DIR", ""))
    except CrmError as error:
        flash_error(error)
        return _page(error.status)
    state = "已核对无误" if info["verified"] else "但核对未通过：" + "；".join(info["problems"][:2])
    flash(f"已备份 {info['name']}，{state}" + (f"；{info['copy']}" if info.get("copy") else ""),
          "success" if info["verified"] else "warning")
    return redirect(url_for("backups.index"))


@bp.route("/<name>/download")
@admin_required
def download(name):
    """Download a backup (to carry it away on a USB stick)."""
    return backup_file(name)


@bp.route("/upload", methods=["POST"])
@admin_required
def upload():
    """Bring in a backup file (from a USB stick); it is checked before it can be restored."""
    try:
        name, checked = received_upload()
    except CrmError as error:
        flash_error(error)
        return _page(error.status)
    flash(f"已上传 {name}：核对无误，可以恢复", "success")
    return redirect(url_for("backups.index"))


@bp.route("/<name>/restore", methods=["POST"])
@admin_required
def restore(name):
    """Restore a backup: typed confirmation, safety backup first, all or nothing."""
    try:
        result = restore_with_confirmation(name, request.form.get("confirm"),
                                           request.form.get("recovery_key", ""),
                                           request.form.get("accept_unsigned") == "1",
                                           request.form.get("rename_clashes") == "1")
    except CrmError as error:
        flash_error(error)
        return _page(error.status)
    flash(f"已恢复 {result['name']}（恢复前的数据已另存为 {result['safety_backup']}）。"
          f"账本校验：{'全部正确' if result['ledger_ok'] else '有问题，请查看账本校验'}。"
          "所有用户需要重新登录。", "success")
    return redirect(url_for("auth.login"))


@bp.route("/recovery-key", methods=["POST"])
@admin_required
def recovery_key():
    """The recovery key (this PC's ledger key), shown and printable once the admin has typed
    their password again; the showing is audited and the page is never cached."""
    try:
        user_service.confirm_own_password(actor(), request.form.get("password", ""))
    except CrmError as error:
        flash_error(error)
        return redirect(url_for("backups.index"), 303)
    audit.record(actor(), "backup.recovery_key", "ledger", "", fingerprint=ledger.key_fingerprint())
    response = make_response(render_template(
        "backups/recovery_key.html", key=ledger.current_key().decode("utf-8"),
        fingerprint=ledger.key_fingerprint()))
    response.headers["Cache-Control"] = "no-store"
    return response
