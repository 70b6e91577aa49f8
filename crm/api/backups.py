"""API: backups (admin)."""
from flask import current_app, jsonify

from crm.api import bp, json_body, text_field
from crm.services import backups
from crm.web import actor, admin_required
from crm.web.backups import folder, restore_with_confirmation


@bp.route("/v1/backups")
@admin_required
def list_backups():
    """The backups with their manifests (newest first)."""
    return jsonify(items=backups.list_backups(folder()))


@bp.route("/v1/backups", methods=["POST"])
@admin_required
def create_backup():
    """Back up now; the answer says whether the read-back check passed."""
    info = backups.create(folder(), "manual", current_app.config["SHOP_NAME"], actor(),
                          current_app.config.get("BACKUP_COPY_DIR", ""))
    return jsonify(info), 201


@bp.route("/v1/backups/<name>/restore", methods=["POST"])
@admin_required
def restore_backup(name):
    """Restore a backup (confirm: the shop's name; recovery_key: another PC's ledger key)."""
    data = json_body()
    result = restore_with_confirmation(name, text_field(data, "confirm"),
                                       text_field(data, "recovery_key", required=False))
    return jsonify(result)
