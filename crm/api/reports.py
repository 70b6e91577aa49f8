"""API: the customer statement and its exports, statistics, the daily closing. Each operation
is declared once (crm.api.declare)."""

from typing import Literal

from pydantic import Field

from crm.api.declare import File, operation
from crm.api.types import DateText, Day, Id, Output, Page, Period, Query, Stamp, Yuan
from crm.http import (
    XLSX,
    chart_file,
    closing_args,
    closing_file,
    period_arg,
    requires,
    statement_file,
    statement_period,
)
from crm.services import statements, stats


class StatementPeriod(Period):
    """A statement's period: the report presets and "all" (since the first card)."""

    preset: Literal["today", "week", "month", "last_month", "all"] = Field(
        None, description="常用期间；all 为全部（开卡以来）")


class StatementQuery(StatementPeriod):
    page: Page = None


class Entry(Output):
    time: Stamp
    card_no: str
    business_type: str
    amount: Yuan
    balance: Yuan
    operator: str
    remark: str
    payment_method: str | None


class StatementTotals(Output):
    recharge: Yuan
    bonus: Yuan
    consume: Yuan
    reversal: Yuan
    refund: Yuan
    net: Yuan
    opening: Yuan
    closing: Yuan


class Statement(Output):
    customer_id: int
    start: Day
    end: Day
    page: int
    pages: int
    total_entries: int
    entries: list[Entry]
    totals: StatementTotals


class DayFigures(Output):
    day: str
    recharge: Yuan
    consume: Yuan


class TypeFigures(Output):
    type: str
    amount: Yuan


class TopCustomer(Output):
    customer_id: int
    name: str
    phone: str
    amount: Yuan


class Activity(Output):
    bucket: str
    label: str
    customers: int


class Stats(Output):
    start: Day
    end: Day
    as_of: str = Field(description="统计时刻（最多缓存 STATS_CACHE_SECONDS 秒）")
    total_recharge: Yuan
    total_consume: Yuan
    bonus_given: Yuan
    outstanding: Yuan
    outstanding_balance: Yuan
    outstanding_paid: Yuan
    outstanding_bonus: Yuan
    average_per_visit: Yuan
    active_customers: int
    new_customers: int
    visits: int
    repurchase_rate: float
    daily: list[DayFigures]
    by_type: list[TypeFigures]
    top: list[TopCustomer]
    activity: list[Activity]


class ClosingQuery(Query):
    day: DateText = Field(None, description="日期，默认今天")
    operator_id: Id = Field(None, description="只看某位操作员")


class ClosingLine(Output):
    business_type: str
    reverses_type: str | None
    payment_method: str
    count: int
    amount: Yuan


class Closing(Output):
    day: Day
    cash: Yuan
    money_in: dict[str, Yuan]
    lines: list[ClosingLine]


PERIOD_ERRORS = {422: "日期格式不正确、结束早于开始、或期间超过 5 年"}
CHART = ({"type": "string", "enum": list(stats.CHARTS)},
         "daily 每日充值与消费、by_type 各客户类型消费、top 消费前十的客户、activity 客户活跃度")


@operation("GET", "/v1/customers/<int:customer_id>/statement",
           "客户对账单：期间内所有卡的全部流水（按时间，分页）和合计", "customerStatement",
           query=StatementQuery, answers={200: (Statement, "OK")}, errors=PERIOD_ERRORS)
def customer_statement(customer_id, query):
    """Entries of all the customer's cards in the period (time order, paged) and the totals."""
    start, end = statement_period(customer_id)
    result = statements.statement(customer_id, start, end, page=query.page or 1)
    totals = result.totals
    return Statement(
        customer_id=customer_id, start=start, end=end, page=result.page, pages=result.pages,
        total_entries=result.count,
        entries=[Entry(time=e.created_at, card_no=e.card_no, business_type=e.business_type,
                       amount=e.amount, balance=e.balance_after,
                       operator=e.display_name or e.username, remark=e.remark,
                       payment_method=e.payment_method or None) for e in result.entries],
        totals=StatementTotals(
            recharge=totals["recharge"], bonus=totals["bonus"], consume=-totals["consume"],
            reversal=totals["reversal"], refund=-totals["refund"], net=totals["net"],
            opening=totals["opening_balance"], closing=totals["closing_balance"]))


@operation("GET", "/v1/customers/<int:customer_id>/statement.xlsx", "对账单 Excel",
           "customerStatementXlsx", query=StatementPeriod, answers={200: (File(XLSX), "文件")},
           errors=PERIOD_ERRORS)
@requires("export")
def customer_statement_xlsx(customer_id):
    """The statement as Excel."""
    return statement_file(customer_id, "xlsx")


@operation("GET", "/v1/customers/<int:customer_id>/statement.pdf",
           "对账单 PDF（最多 2000 笔流水，更多请导出 Excel）", "customerStatementPdf",
           query=StatementPeriod,
           answers={200: (File("application/pdf"), "文件")},
           errors={**PERIOD_ERRORS,
                   422: "日期不正确，或这段期间超过 PDF 的 2000 笔上限（请导出 Excel）"})
@requires("export")
def customer_statement_pdf(customer_id):
    """The statement as PDF."""
    return statement_file(customer_id, "pdf")


@operation("GET", "/v1/stats", "统计分析：充值、消费、赠送、储值余额、客户数、客单价、复购率与图表数据",
           "stats", query=Period, answers={200: (Stats, "OK")},
           errors={422: PERIOD_ERRORS[422]})
@requires("statistics")
def dashboard_stats():
    """The dashboard's figures and chart data for a period (amounts in yuan)."""
    start, end = period_arg()
    data = stats.current(start, end)
    s = data["summary"]
    return Stats(start=start, end=end, as_of=data["as_of"],
                 **{k: s[k] for k in ("total_recharge", "total_consume", "bonus_given",
                                      "outstanding", "outstanding_paid", "outstanding_bonus",
                                      "average_per_visit", "active_customers", "new_customers",
                                      "visits")},
                 outstanding_balance=s["outstanding"],
                 repurchase_rate=round(s["repurchase_rate"], 4),
                 daily=data["daily"], by_type=data["by_type"], top=data["top"],
                 activity=data["activity"])


@operation("GET", "/v1/stats/<chart>.xlsx", "统计图表的数据 Excel", "chartXlsx", query=Period,
           path={"chart": CHART}, answers={200: (File(XLSX), "图表数据")},
           errors={404: "没有这个图表", 422: PERIOD_ERRORS[422]})
@requires("statistics", "export")
def chart_xlsx(chart):
    """One dashboard chart's data for the period as Excel (daily, by_type, top, activity)."""
    return chart_file(chart)


@operation("GET", "/v1/closing", "日结 / 交班：当天按支付方式的收款、各业务合计、钱箱应有现金",
           "dailyClosing", query=ClosingQuery, answers={200: (Closing, "OK")},
           errors={422: "日期格式不正确"})
@requires("statistics")
def daily_closing():
    """日结: the day's takings by payment method and business type, and the cash due."""
    day, operator_id = closing_args()
    result = stats.closing(day, operator_id)
    return Closing(day=day, cash=result["cash"], money_in=result["money_in"],
                   lines=result["lines"])


@operation("GET", "/v1/closing.xlsx", "日结 Excel（参数同日结）", "dailyClosingXlsx",
           query=ClosingQuery, answers={200: (File(XLSX), "日结")}, errors={422: "日期格式不正确"})
@requires("statistics", "export")
def daily_closing_xlsx():
    """日结 as Excel (same day and operator_id as GET /v1/closing)."""
    return closing_file()


