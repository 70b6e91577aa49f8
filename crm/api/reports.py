"""API: the customer statement and its exports."""
from flask import jsonify

from crm.api import bp
from crm.http import closing_args, int_arg, period_arg, requires, statement_file, xlsx_response
from crm.money import format_fen
from crm.services import statements, stats


@bp.route("/v1/customers/<int:customer_id>/statement")
def customer_statement(customer_id):
    """Entries of all the customer's cards in the period (time order, paged) and the totals."""
    start, end = period_arg()
    result = statements.statement(customer_id, start, end, page=int_arg("page", 1))
    totals = result.totals
    return jsonify(
        customer_id=customer_id, start=start.isoformat(), end=end.isoformat(),
        page=result.page, pages=result.pages, total_entries=result.count,
        entries=[{"time": e.created_at.isoformat(" "), "card_no": e.card_no,
                  "business_type": e.business_type, "amount": format_fen(e.amount),
                  "balance": format_fen(e.balance_after),
                  "operator": e.display_name or e.username, "remark": e.remark,
                  "payment_method": e.payment_method or None} for e in result.entries],
        totals={"recharge": format_fen(totals["recharge"]), "bonus": format_fen(totals["bonus"]),
                "consume": format_fen(-totals["consume"]),
                "reversal": format_fen(totals["reversal"]), "refund": format_fen(-totals["refund"]),
                "net": format_fen(totals["net"]), "opening": format_fen(totals["opening_balance"]),
                "closing": format_fen(totals["closing_balance"])})


@bp.route("/v1/customers/<int:customer_id>/statement.xlsx")
@requires("export")
def customer_statement_xlsx(customer_id):
    """The statement as Excel."""
    return statement_file(customer_id, "xlsx")


@bp.route("/v1/customers/<int:customer_id>/statement.pdf")
@requires("export")
def customer_statement_pdf(customer_id):
    """The statement as PDF."""
    return statement_file(customer_id, "pdf")


@bp.route("/v1/stats")
@requires("statistics")
def dashboard_stats():
    """The dashboard's figures and chart data for a period (amounts in yuan)."""
    start, end = period_arg()
    data = stats.current(start, end)
    s = data["summary"]
    money = ("total_recharge", "total_consume", "bonus_given", "outstanding", "outstanding_paid",
             "outstanding_bonus", "average_per_visit")
    return jsonify(
        start=start.isoformat(), end=end.isoformat(), as_of=data["as_of"],
        **{k: format_fen(s[k]) for k in money}, outstanding_balance=format_fen(s["outstanding"]),
        active_customers=s["active_customers"], new_customers=s["new_customers"],
        visits=s["visits"], repurchase_rate=round(s["repurchase_rate"], 4),
        daily=[{"day": r["day"], "recharge": format_fen(r["recharge"]),
                "consume": format_fen(r["consume"])} for r in data["daily"]],
        by_type=[{"type": r["type"], "amount": format_fen(r["amount"])} for r in data["by_type"]],
        top=[{**r, "amount": format_fen(r["amount"])} for r in data["top"]],
        activity=data["activity"])


@bp.route("/v1/stats/<chart>.xlsx")
@requires("statistics", "export")
def chart_xlsx(chart):
    """One dashboard chart's data for the period as Excel (daily, by_type, top, activity)."""
    start, end = period_arg()
    filename, data = stats.chart_xlsx(chart, start, end)
    return xlsx_response(data, filename)


@bp.route("/v1/closing")
@requires("statistics")
def daily_closing():
    """日结: the day's takings by payment method and business type, and the cash due."""
    day, operator_id = closing_args()
    result = stats.closing(day, operator_id)
    return jsonify(day=day.isoformat(), cash=format_fen(result["cash"]),
                   money_in={k: format_fen(v) for k, v in result["money_in"].items()},
                   lines=[{**line, "amount": format_fen(line["amount"])}
                          for line in result["lines"]])


@bp.route("/v1/closing.xlsx")
@requires("statistics", "export")
def daily_closing_xlsx():
    """日结 as Excel (same day and operator_id as GET /v1/closing)."""
    filename, data = stats.closing_xlsx(*closing_args())
    return xlsx_response(data, filename)
