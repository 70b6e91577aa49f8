"""对账查询 (flow two) and its exports; the statistics dashboard; the daily closing (日结)."""

from flask import Blueprint, render_template, request

from crm import clock
from crm.http import (
    chart_file,
    closing_args,
    closing_file,
    int_arg,
    period_arg,
    requires,
    statement_file,
    statement_period,
)
from crm.models import User
from crm.money import format_fen
from crm.services import cards, ledger, statement_export, statements, stats

bp = Blueprint("reports", __name__)


@bp.route("/statements")
def find():
    """对账查询: find the customer (name, phone, number) whose statement to show."""
    q = request.args.get("q", "").strip()[:50]
    return render_template("reports/find.html", q=q, results=cards.counter_search(q))


@bp.route("/customers/<int:customer_id>/statement")
def statement(customer_id):
    """The customer's statement for a period: entries in time order, totals, exports."""
    start, end = statement_period(customer_id)
    result = statements.statement(customer_id, start, end, page=int_arg("page", 1))
    return render_template("reports/statement.html", st=result,
                           presets=statements.STATEMENT_PRESETS,
                           types=ledger.BUSINESS_TYPES, methods=ledger.PAYMENT_METHODS,
                           labels=statement_export.TOTAL_LABELS,
                           discount_text=statement_export.discount_text,
                           pdf_refusal=statement_export.pdf_refusal(result.count))


@bp.route("/customers/<int:customer_id>/statement.xlsx")
@requires("export")
def statement_xlsx(customer_id):
    """The statement as Excel."""
    return statement_file(customer_id, "xlsx")


@bp.route("/customers/<int:customer_id>/statement.pdf")
@requires("export")
def statement_pdf(customer_id):
    """The statement as PDF."""
    return statement_file(customer_id, "pdf")


@bp.route("/stats")
@requires("statistics")
def dashboard():
    """统计分析: the period's figures and charts."""
    start, end = period_arg()
    data = stats.dashboard(start, end)
    _, days = stats.grouped(data["daily"], start, end)
    chart_data = {
        "daily": {"labels": [r["label"] for r in days],
                  "recharge": [format_fen(r["recharge"]) for r in days],
                  "consume": [format_fen(r["consume"]) for r in days]},
        "by_type": {"labels": [r["type"] for r in data["by_type"]],
                    "values": [format_fen(r["amount"]) for r in data["by_type"]]},
        "top": {"labels": [r["name"] for r in data["top"]],
                "values": [format_fen(r["amount"]) for r in data["top"]]},
        "activity": {"labels": [r["label"] for r in data["activity"]],
                     "values": [r["customers"] for r in data["activity"]]},
    }
    titles = {key: stats.chart_title(key, start, end) for key in stats.CHARTS}
    return render_template("reports/dashboard.html", data=data, start=start, end=end,
                           presets=statements.PRESETS, chart_data=chart_data, titles=titles)


@bp.route("/stats/<chart>.xlsx")
@requires("statistics", "export")
def chart_xlsx(chart):
    """One chart's data as Excel."""
    return chart_file(chart)


@bp.route("/closing")
@requires("statistics")
def closing():
    """日结 / 交班: the day's takings for the shop or one operator; printable."""
    day, operator_id = closing_args()
    return render_template("reports/closing.html", result=stats.closing(day, operator_id),
                           users=User.select().order_by(User.username),
                           types=ledger.BUSINESS_TYPES, methods=ledger.PAYMENT_METHODS,
                           now_text=clock.as_text(clock.now()))


@bp.route("/closing.xlsx")
@requires("statistics", "export")
def closing_xlsx():
    """The day's closing as Excel."""
    return closing_file()
