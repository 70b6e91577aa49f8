"""API: backups and the monitoring status (admin)."""
from flask import current_app, jsonify

from crm.api import bp, json_body, text_field
from crm.http import (
    actor,
    admin_required,
    backup_file,
    received_upload,
    restore_with_confirmation,
)
from crm.http import backup_folder as folder
from crm.money import format_fen
from crm.services import backups


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


@bp.route("/v1/backups/<name>/download")
@admin_required
def download_backup(name):
    """The backup file itself (a backup's name only, never a path)."""
    return backup_file(name)


@bp.route("/v1/backups/upload", methods=["POST"])
@admin_required
def upload_backup():
    """Bring in a backup file (multipart field `file`): kept under a name of our own, then
    checked; the answer is its entry of the backup list (verified or not, with the problems)."""
    name, _ = received_upload()
    return jsonify(backups.describe(backups.path_of(folder(), name))), 201


@bp.route("/v1/backups/<name>/restore", methods=["POST"])
@admin_required
def restore_backup(name):
    """Restore a backup (confirm: the shop's name; recovery_key: another PC's ledger key)."""
    data = json_body()
    result = restore_with_confirmation(name, text_field(data, "confirm"),
                                       text_field(data, "recovery_key", required=False),
                                       data.get("accept_unsigned") is True,
                                       data.get("rename_clashes") is True)
    return jsonify(result)


@bp.route("/v1/monitor")
@admin_required
def monitor():
    """数据监控: database, durability, counts, today's entries, backups, ledger check, disks."""
    from crm.services import monitor as monitor_service

    s = monitor_service.status(current_app.config)
    last_check = s["last_check"]
    return jsonify(
        database=s["database"], version=str(s["version"]), size=s["size"], durable=s["durable"],
        durability_setting=s["durability_setting"], counts=s["counts"],
        today_entries=s["today_entries"], today_net=format_fen(s["today_net"]),
        outstanding=format_fen(s["outstanding"]), last_backup=s["last_backup"],
        next_backup=s["next_backup"],
        last_check=({**last_check[1], "time": last_check[0].isoformat(" ")}
                    if last_check else None),
        disks=[{"label": label, "path": path, "free": free}
               for label, (path, free) in s["disks"].items()],
        app_version=s["app_version"], uptime=s["uptime"], restarts=s["restarts"],
        problems=s["problems"])
