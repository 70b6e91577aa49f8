"""API: backups and the monitoring status (admin). Each operation is declared once
(crm.api.declare)."""
from flask import current_app
from pydantic import Field

from crm.api.declare import File, operation
from crm.api.types import Form, Input, Output, Stamp, Upload, Yuan
from crm.http import (
    actor,
    admin_required,
    backup_file,
    received_upload,
    restore_with_confirmation,
)
from crm.http import backup_folder as folder
from crm.services import backups


class Backup(Output):
    """A backup's entry in the list (crm.services.backups.describe)."""

    name: str
    size: int
    kind: str
    created_at: str
    counts: dict[str, int]
    verified: bool
    checked_at: str
    problems: list[str]
    readable: bool
    signed: bool
    shop_name: str = ""
    schema_: str = Field("", alias="schema", description="备份的最后一个数据库迁移")
    database: str = ""
    copy_: str = Field("", alias="copy",
                       description="刚做的备份：复制到第二位置（BACKUP_COPY_DIR）的结果")
    native: str = Field("", description="刚做的备份（MySQL）：mysqldump 原生备份的结果")


class BackupList(Output):
    items: list[Backup]


class BackupUpload(Form):
    file: Upload
    recovery_key: str = Field(None, description="另一台电脑的备份：那台电脑的恢复密钥")


class RestoreRequest(Input):
    confirm: str = Field(description="店名，与设置中的 SHOP_NAME 相同")
    recovery_key: str = Field(None, max_length=80, pattern="^\\s*([0-9a-fA-F]{64})?\\s*$",
                              description="另一台电脑的恢复密钥（换电脑恢复时）：64 位十六进制字符")
    accept_unsigned: bool = Field(None, description="确认恢复升级前做的未签名旧备份"
                                                    "（只限本机或所给恢复密钥的备份）")
    rename_clashes: bool = Field(None, description="旧备份里按新规则重名的用户名或客户类型："
                                                   "每组第一个保留，其余加 -2 等后缀")


class Renamed(Output):
    what: str
    old: str
    new: str


class RestoreResult(Output):
    name: str
    safety_backup: str
    ledger_ok: bool
    renamed: list[Renamed]
    cards_checked: int
    entries_checked: int


class LastCheck(Output):
    """The newest ledger check, as its audit row recorded it."""

    time: Stamp
    ok: bool = False
    cards_checked: int = 0
    entries_checked: int = 0
    problems: list[dict] = []


class Disk(Output):
    label: str
    path: str
    free: int


class Monitor(Output):
    database: str
    version: str
    size: int
    durable: bool
    durability_setting: str
    counts: dict[str, int]
    today_entries: int
    today_net: Yuan
    outstanding: Yuan
    last_backup: Backup | None
    next_backup: str
    last_check: LastCheck | None
    disks: list[Disk]
    app_version: str
    uptime: str
    restarts: int
    problems: list[str]


NAME = ({"type": "string"}, "备份文件名（备份列表中的 name），不是路径")
BUSY = {409: "另一个备份或恢复正在进行"}


@operation("GET", "/v1/backups", "备份列表（管理员）", "listBackups",
           answers={200: (BackupList, "OK")})
@admin_required
def list_backups():
    """The backups with their manifests (newest first)."""
    return BackupList(items=[Backup.from_service(b) for b in backups.list_backups(folder())])


@operation("POST", "/v1/backups", "立即备份并读回核对（管理员）", "createBackup",
           answers={201: (Backup, "已备份")}, errors={**BUSY, 422: "无法写入备份文件夹"})
@admin_required
def create_backup():
    """Back up now; the answer says whether the read-back check passed."""
    return Backup.from_service(backups.create(
        folder(), "manual", current_app.config["SHOP_NAME"], actor(),
        current_app.config.get("BACKUP_COPY_DIR", "")))


@operation("GET", "/v1/backups/<name>/download", "下载备份文件（管理员）", "downloadBackup",
           path={"name": NAME},
           answers={200: (File("application/zip"), "备份文件"),
                    206: (File("application/zip"), "请求头 Range 所要的一段（断点续传）")},
           errors={404: "没有这个备份", 422: "备份文件名不正确"})
@admin_required
def download_backup(name):
    """The backup file itself (a backup's name only, never a path)."""
    return backup_file(name)


@operation("POST", "/v1/backups/upload",
           "上传备份文件（管理员）：以系统自己的文件名保存并核对，通过才保留，之后可以恢复",
           "uploadBackup", form=BackupUpload, answers={201: (Backup, "已保存并通过核对")},
           errors={413: "文件太大", 422: "没有文件、不是备份文件、无法读取或未通过核对（未保留）"})
@admin_required
def upload_backup():
    """Bring in a backup file (multipart field `file`): kept under a name of our own, then
    checked; the answer is its entry of the backup list (verified or not, with the problems)."""
    name, _ = received_upload()
    return Backup.from_service(backups.describe(backups.path_of(folder(), name)))


@operation("POST", "/v1/backups/<name>/restore", "恢复到某个备份（管理员；需输入店名确认）",
           "restoreBackup", path={"name": ({"type": "string"}, None)}, body=RestoreRequest,
           answers={200: (RestoreResult, "OK")},
           errors={400: "请求体不是 JSON 对象", 404: "没有这个备份", **BUSY,
                   422: "店名不符、备份未通过核对或恢复密钥不正确"})
@admin_required
def restore_backup(name, body):
    """Restore a backup (confirm: the shop's name; recovery_key: another PC's ledger key)."""
    return RestoreResult.from_service(restore_with_confirmation(
        name, body.confirm, body.recovery_key or "", body.accept_unsigned is True,
        body.rename_clashes is True))


@operation("GET", "/v1/monitor", "数据监控（管理员）：数据库、断电保护、备份、账本校验、磁盘、运行时间",
           "monitor", answers={200: (Monitor, "OK")})
@admin_required
def monitor():
    """数据监控: database, durability, counts, today's entries, backups, ledger check, disks."""
    from crm.services import monitor as monitor_service

    s = monitor_service.status(current_app.config)
    last_check = s["last_check"]
    return Monitor.from_service({
        **{k: s[k] for k in ("database", "size", "durable", "durability_setting", "counts",
                             "today_entries", "today_net", "outstanding", "last_backup",
                             "next_backup", "app_version", "uptime", "restarts", "problems")},
        "version": str(s["version"]),
        "last_backup": s["last_backup"] and Backup.from_service(s["last_backup"]),
        "last_check": {**last_check[1], "time": last_check[0]} if last_check else None,
        "disks": [{"label": label, "path": path, "free": free}
                  for label, (path, free) in s["disks"].items()]})
