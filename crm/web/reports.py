"""对账查询 (flow two) and its exports."""
from flask import Blueprint, Response, current_app, render_template, request

from crm.services import cards, ledger, statement_export, statements
from crm.web.customers import xlsx_response

bp = Blueprint("reports", __name__)


def _period():
    return statements.parse_period(request.args.get("start"), request.args.get("end"),
                                   request.args.get("preset"))


def _page():
    value = request.args.get("page", "1")
    return int(value) if value.isdigit() else 1


@bp.route("/statements")
def find():
    """对账查询: find the customer (name, phone, number) whose statement to show."""
    q = request.args.get("q", "").strip()[:50]
    return render_template("reports/find.html", q=q, results=cards.counter_search(q))


@bp.route("/customers/<int:customer_id>/statement")
def statement(customer_id):
    """The customer's statement for a period: entries in time order, totals, exports."""
    start, end = _period()
    result = statements.statement(customer_id, start, end, page=_page())
    return render_template("reports/statement.html", st=result, presets=statements.PRESETS,
                           types=ledger.BUSINESS_TYPES, methods=ledger.PAYMENT_METHODS,
                           labels=statement_export.TOTAL_LABELS)


@bp.route("/customers/<int:customer_id>/statement.xlsx")
def statement_xlsx(customer_id):
    """The statement as Excel."""
    start, end = _period()
    data = statement_export.xlsx(current_app.config["SHOP_NAME"], customer_id, start, end)
    return xlsx_response(data, f"对账单_{customer_id}_{start}_{end}.xlsx")


@bp.route("/customers/<int:customer_id>/statement.pdf")
def statement_pdf(customer_id):
    """The statement as PDF."""
    start, end = _period()
    data = statement_export.pdf_bytes(current_app.config["SHOP_NAME"], customer_id, start, end)
    return Response(data, mimetype="application/pdf", headers={
        "Content-Disposition": f"inline; filename=statement-{customer_id}-{start}-{end}.pdf"})
