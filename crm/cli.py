"""The `crm` command line. Each command's docstring is its help."""
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from crm.errors import CrmError


def _create_app():
    from crm import create_app

    return create_app()


@click.command("run")
@click.option("--host", default=None, help="监听地址，默认 0.0.0.0（局域网可访问）")
@click.option("--port", type=int, default=None, help="端口，默认 8000")
@click.option("--no-browser", is_flag=True, help="启动后不自动打开浏览器")
@click.option("--no-supervisor", is_flag=True, help="不由守护进程看护（服务进程退出后不自动重启）")
def run_command(host, port, no_browser, no_supervisor):
    """Migrate the database and serve the app on the LAN (what a double-click on crm.py does).
    A supervising process restarts the server within seconds if it ever dies."""
    from flask.cli import ScriptInfo

    from crm import launcher

    if launcher.supervising(no_supervisor):
        # The supervisor only reads the settings: the app is made in the serving processes.
        sys.exit(launcher.supervise_with_settings(host, port, no_browser))
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()
    with app.app_context():
        sys.exit(launcher.run(app, host=host, port=port,
                              open_browser=False if no_browser else None))


@click.command("migrate")
@with_appcontext
def migrate_command():
    """Apply pending schema migrations (a second run changes nothing)."""
    from crm import db as crm_db

    try:
        applied = crm_db.migrate(current_app.extensions["crm_db"])
    except CrmError as error:  # e.g. names that the upgrade would merge: it names them
        raise click.ClickException(error.message) from None
    click.echo("已执行迁移：" + "、".join(applied) if applied else "数据库结构已是最新")


@click.command("create-admin")
@click.option("--username", required=True, help="管理员用户名")
@click.option("--password", required=True, help="密码（至少 8 位）")
@click.option("--display-name", default="", help="姓名（可选）")
@with_appcontext
def create_admin_command(username, password, display_name):
    """Create an admin user (the first-run setup page, from the command line)."""
    from crm.services import SYSTEM
    from crm.services import users as user_service

    database = current_app.extensions["crm_db"]
    crm_db_migrate(database)
    with database.connection_context():
        try:
            user = user_service.create_user(SYSTEM, username, password, role="admin",
                                            display_name=display_name)
        except CrmError as error:
            raise click.ClickException(error.message) from None
    click.echo(f"已创建管理员 {user.username}")


@click.command("import-customers")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--create-types", is_flag=True, help="自动创建表格中系统里没有的客户类型")
@click.option("--dry-run", is_flag=True, help="只检查，不导入")
@click.option("--user", "username", default="", help="以哪位用户的名义导入（默认：第一位管理员）")
@with_appcontext
def import_customers_command(file, create_types, dry_run, username):
    """Import customers from an .xlsx sheet: every bad row is listed; the valid ones are imported
    in one transaction (the same rules as the web page). Opening balances are recorded as
    entered by --user (default: the first active admin)."""
    from pathlib import Path

    from crm.models import User
    from crm.services import Actor, customer_import, users

    data = Path(file).read_bytes()
    database = current_app.extensions["crm_db"]
    with database.connection_context():
        user = (User.select().where(User.active & (User.username
                                                   == users.normalize_username(username))).first()
                if username else users.first_admin())
        if user is None:
            raise click.ClickException("找不到导入用户：请先创建管理员，或用 --user 指定用户名")
        actor = Actor(user=user, ip="cli")
        try:
            preview = customer_import.preview(data, create_types=create_types)
            for row in preview.bad_rows:
                click.echo(f"第 {row.line} 行：" + "；".join(row.problems(create_types)))
            click.echo(f"可导入 {len(preview.valid_rows)} 行，有问题 {len(preview.bad_rows)} 行")
            if dry_run:
                return
            done = customer_import.run(actor, data, Path(file).name, create_types=create_types,
                                       expected=len(preview.valid_rows))
        except CrmError as error:
            raise click.ClickException(error.message) from None
    for line, reason in done.skipped:
        click.echo(f"第 {line} 行未导入：{reason}")
    click.echo(f"已导入 {done.imported} 位客户（分 {done.parts} 批确认保存）")


@click.command("verify")
@with_appcontext
def verify_command():
    """Recompute every card's ledger chain and check balance = sum of entries; exit 1 on problems."""
    from crm.services import SYSTEM, ledger

    database = current_app.extensions["crm_db"]
    with database.connection_context():
        report = ledger.verify_and_audit(SYSTEM)
    for problem in report.problems:
        click.echo(f"卡 {problem['card_no'] or problem['card_id']} 流水 {problem['record_id']} "
                   f"(序号 {problem['seq']})：{problem['problem']}")
    click.echo(f"已检查 {report.cards_checked} 张卡、{report.entries_checked} 条流水："
               + ("全部正确" if report.ok else f"发现 {len(report.problems)} 处问题"))
    if not report.ok:
        sys.exit(1)


@click.command("seed-demo")
@click.option("--customers", default=1000, show_default=True, help="客户数（每位一张卡）")
@click.option("--entries", default=10000, show_default=True, help="流水笔数（约一年）")
@click.option("--force", is_flag=True, help="数据库里已有客户时也继续（会追加演示数据）")
@with_appcontext
def seed_demo_command(customers, entries, force):
    """Fill the database with plausible demo data: customers, cards and a year of sealed,
    balanced ledger entries. Refuses a database that already holds customers unless --force."""
    import time

    from crm.models import Customer
    from crm.services import demo
    from crm.services import users as user_service

    database = current_app.extensions["crm_db"]
    with database.connection_context():
        if Customer.select().exists() and not force:
            raise click.ClickException("数据库里已经有客户数据：演示数据只用于空库。确要追加请加 --force")
        admin = user_service.first_admin()
        if admin is None:
            raise click.ClickException("请先创建管理员（crm create-admin），演示流水记在他名下")
        if entries < customers:
            raise click.ClickException("流水笔数不能少于客户数（每张卡至少一笔开卡充值）")
        started = time.monotonic()
        made = demo.seed_bulk(database, admin, customers=customers, entries=entries,
                              progress=lambda c, e: click.echo(f"  {c} 位客户，{e} 笔流水…"))
    click.echo(f"已生成 {customers} 位客户、{made} 笔流水，用时 {time.monotonic() - started:.1f} 秒")


@click.command("backup")
@with_appcontext
def backup_command():
    """Back up now into the backup folder, read it back and check it; exit 1 if the check fails."""
    from crm.services import backups

    config = current_app.config
    with current_app.extensions["crm_db"].connection_context():
        try:
            info = backups.create(config["BACKUP_DIR"], "manual", config["SHOP_NAME"],
                                  _cli_actor(), config.get("BACKUP_COPY_DIR", ""))
        except CrmError as error:
            raise click.ClickException(error.message) from None
    click.echo(f"已备份：{Path(config['BACKUP_DIR']) / info['name']}（{info['size'] / 1e6:.1f} MB）")
    if info.get("copy"):
        click.echo(info["copy"])
    if not info["verified"]:
        click.echo("核对未通过：" + "；".join(info["problems"]))
        sys.exit(1)
    click.echo("已读回核对：校验和、行数、每张卡的签名链与余额全部正确")


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--recovery-key-file", type=click.Path(exists=True, dir_okay=False),
              help="旧电脑的恢复密钥文件（在另一台电脑上恢复时需要）")
@click.option("--accept-unsigned", is_flag=True,
              help="确认恢复升级前做的未签名旧备份（只限本机或所给恢复密钥的备份）")
@click.option("--rename-clashes", is_flag=True,
              help="旧备份里按新规则重名的用户名或客户类型：每组第一个保留，其余加 -2 等后缀")
@click.option("--yes", is_flag=True, help="不再询问，直接恢复")
@with_appcontext
def restore_command(file, recovery_key_file, accept_unsigned, rename_clashes, yes):
    """Restore a backup file: it is checked first, the current data is backed up, then replaced
    in one transaction (all or nothing), and the ledger is verified."""
    from crm.services import backups

    config = current_app.config
    from crm.services import ledger

    try:
        key = ledger.recovery_key(Path(recovery_key_file).read_text(
            encoding="utf-8", errors="replace") if recovery_key_file else None)
    except CrmError as error:
        raise click.ClickException(error.message) from None
    if not yes:
        click.confirm(f"用 {file} 替换“{config['SHOP_NAME']}”现有的全部数据？（会先自动备份现有数据）",
                      abort=True)
    database = current_app.extensions["crm_db"]
    crm_db_migrate(database)
    with database.connection_context():
        try:
            name = backups.save_upload(config["BACKUP_DIR"], Path(file).read_bytes())
            result = backups.restore(config["BACKUP_DIR"], name, actor=_cli_actor(),
                                     shop_name=config["SHOP_NAME"],
                                     key=key, accept_unsigned=accept_unsigned,
                                     rename_clashes=rename_clashes)
        except CrmError as error:
            raise click.ClickException(error.message) from None
    for renamed in result["renamed"]:
        click.echo(f"{renamed['what']}“{renamed['old']}”已改名为“{renamed['new']}”")
    safety = backups.check(Path(result["safety_path"]))
    click.echo(f"恢复前的数据已另存并核对{'无误' if safety.ok else '未通过：' + '；'.join(safety.problems)}")
    click.echo(f"已恢复（恢复前的数据另存为 {result['safety_backup']}）；账本校验："
               + ("全部正确" if result["ledger_ok"] else "有问题，请运行 crm verify 查看"))
    if not result["ledger_ok"]:
        sys.exit(1)


def _rename(what, old, new):
    from crm.services import names

    database = current_app.extensions["crm_db"]
    # No migration first: this is the command an upgrade that stopped asks for.
    with database.connection_context():
        try:
            stored = names.rename(database, what, old, new)
        except CrmError as error:
            raise click.ClickException(error.message) from None
    click.echo(f"已把“{old}”改名为“{stored}”")


@click.command("rename-user")
@click.argument("old")
@click.argument("new")
@with_appcontext
def rename_user_command(old, new):
    """Rename the login OLD (as stored, exactly) to NEW; the user keeps their password and
    history. The upgrade names this command when two user names would become one."""
    _rename("user", old, new)


@click.command("rename-type")
@click.argument("old")
@click.argument("new")
@with_appcontext
def rename_type_command(old, new):
    """Rename the customer type OLD (as stored, exactly) to NEW; its customers keep it."""
    _rename("type", old, new)


@click.command("recovery-key")
@with_appcontext
def recovery_key_command():
    """Print this instance's ledger key: keep it on paper or a USB stick apart from the PC, to
    restore the shop's backups on another PC."""
    from crm.services import ledger

    click.echo(ledger.current_key().decode("utf-8"))


@click.command("autostart")
@click.argument("state", type=click.Choice(["on", "off"]))
@with_appcontext
def autostart_command(state):
    """Start the server with the PC (on) or not (off): Windows Startup folder, or a systemd unit."""
    from crm import autostart

    if state == "on":
        click.echo(autostart.enable(current_app.instance_path))
    else:
        click.echo(autostart.disable())


def crm_db_migrate(database):
    """Bring the schema up to date (a restore needs the current tables)."""
    from crm import db as crm_db

    try:
        crm_db.migrate(database)
    except CrmError as error:
        raise click.ClickException(error.message) from None


def _cli_actor():
    from crm.services import Actor

    return Actor(user=None, ip="cli")


COMMANDS = (run_command, migrate_command, create_admin_command, import_customers_command,
            verify_command, seed_demo_command, backup_command, restore_command,
            recovery_key_command, autostart_command, rename_user_command, rename_type_command)


def init_app(app):
    """Make the commands available as `flask --app crm …` too."""
    for command in COMMANDS:
        app.cli.add_command(command)


def main(argv=None):
    """Entry point of the `crm` console command."""
    group = FlaskGroup(create_app=_create_app, add_default_commands=False,
                       load_dotenv=False, set_debug_flag=False,
                       help="客户关系管理系统 — shop CRM command line.")
    for command in COMMANDS:
        group.add_command(command)
    return group.main(args=argv, prog_name="crm")


if __name__ == "__main__":
    main()
