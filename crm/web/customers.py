"""Customer pages: find, create, edit, archive, detail, Excel export and import."""
from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from crm.errors import CrmError
from crm.http import actor, customer_list_file, import_template_file, int_form, requires, uploaded_file
from crm.services import cards, customer_import, customers, ledger
from crm.web import flash_error

bp = Blueprint("customers", __name__, url_prefix="/customers")

@bp.route("")
def index():
    """The customer list with live search; htmx requests get only the results."""
    filters = customers.parse_filters(request.args)
    rows, total = customers.search(**filters)
    template = "customers/_results.html" if request.headers.get("HX-Request") else "customers/index.html"
    return render_template(template, rows=rows, total=total, filters=filters,
                           held=customers.card_totals(c.id for c in rows),
                           types=customers.type_choices(), sorts=customers.SORTS,
                           per_page=customers.PER_PAGE)


@bp.route("/export.xlsx")
@requires("export")
def export():
    """Every customer under the current filters, as Excel."""
    return customer_list_file(customers.parse_filters(request.args))


def _form_page(template, status=200, **context):
    return render_template(template, types=customers.type_choices(), genders=customers.GENDERS,
                           **context), status


@bp.route("/new", methods=["GET", "POST"])
@requires("edit_customers")
def create():
    """New customer form; on POST create it and show it."""
    if request.method == "POST":
        try:
            customer = customers.create_customer(actor(), request.form)
        except CrmError as error:
            return _form_page("customers/form.html", error.status, form=request.form, error=error)
        flash(f"已新建客户 {customer.name}（编号 {customer.customer_no}）", "success")
        return redirect(url_for("customers.detail", customer_id=customer.id))
    return _form_page("customers/form.html", form={})


@bp.route("/<int:customer_id>")
def detail(customer_id):
    """One customer: profile, cards, latest activity, edit history."""
    return render_template("customers/detail.html", customer=customers.get_customer(customer_id),
                           history=customers.history(customer_id),
                           cards=cards.cards_of(customer_id), methods=ledger.PAYMENT_METHODS)


@bp.route("/<int:customer_id>/edit", methods=["GET", "POST"])
@requires("edit_customers")
def edit(customer_id):
    """Edit form; on POST save the changes."""
    customer = customers.get_customer(customer_id)
    if request.method == "POST":
        try:
            customers.update_customer(actor(), customer_id, request.form)
        except CrmError as error:
            return _form_page("customers/form.html", error.status, form=request.form, error=error,
                              customer=customer)
        flash("已保存", "success")
        return redirect(url_for("customers.detail", customer_id=customer_id))
    form = {"name": customer.name, "gender": customer.gender, "phone": customer.phone,
            "address": customer.address, "type_id": customer.type_id or "",
            "birthday": customer.birthday or "", "remark": customer.remark}
    return _form_page("customers/form.html", form=form, customer=customer)


@bp.route("/<int:customer_id>/archive", methods=["POST"])
@requires("edit_customers")
def archive(customer_id):
    """Hide a customer from the list (kept with all history)."""
    customer = customers.set_archived(actor(), customer_id, True)
    flash(f"已归档客户 {customer.name}；可在“已归档”中找到并恢复", "info")
    return redirect(url_for("customers.detail", customer_id=customer_id))


@bp.route("/<int:customer_id>/restore", methods=["POST"])
@requires("edit_customers")
def restore(customer_id):
    """Bring an archived customer back."""
    customer = customers.set_archived(actor(), customer_id, False)
    flash(f"已恢复客户 {customer.name}", "success")
    return redirect(url_for("customers.detail", customer_id=customer_id))


def _stash_folder():
    return Path(current_app.instance_path) / "imports"


@bp.route("/import")
@requires("edit_customers")
def import_form():
    """Upload page for an Excel sheet of customers."""
    return render_template("customers/import.html")


@bp.route("/import/template.xlsx")
@requires("edit_customers")
def import_template():
    """The blank import template."""
    return import_template_file()


@bp.route("/import", methods=["POST"])
@requires("edit_customers")
def import_preview():
    """Check the uploaded sheet and show every bad row with its reason before importing."""
    try:
        filename, data = uploaded_file()
        preview = customer_import.preview(data, create_types=bool(request.form.get("create_types")))
    except CrmError as error:
        flash_error(error)
        return render_template("customers/import.html"), error.status
    token = customer_import.stash(_stash_folder(), data)
    return render_template("customers/preview.html", preview=preview, token=token,
                           part_rows=customer_import.PART_ROWS,
                           filename=filename)


@bp.route("/import/recheck", methods=["POST"])
@requires("edit_customers")
def import_recheck():
    """Check the stashed sheet again, this time creating the types it names that are missing."""
    token = request.form.get("token", "")
    try:
        preview = customer_import.preview(customer_import.unstash(_stash_folder(), token),
                                          create_types=True)
    except CrmError as error:
        flash_error(error)
        return render_template("customers/import.html"), error.status
    return render_template("customers/preview.html", preview=preview, token=token,
                           part_rows=customer_import.PART_ROWS,
                           filename=request.form.get("filename", "")[:100])


@bp.route("/import/confirm", methods=["POST"])
@requires("edit_customers")
def import_confirm():
    """Import the valid rows of the previewed sheet (in confirmed parts, each all or nothing)."""
    token = request.form.get("token", "")
    filename = request.form.get("filename", "")[:100]
    create_types = bool(request.form.get("create_types"))
    try:
        data = customer_import.unstash(_stash_folder(), token)
        expected = int_form(request.form, "expected", -1)
        done = customer_import.run(actor(), data, filename, create_types=create_types,
                                   expected=expected)
    except CrmError as error:
        flash_error(error)
        return render_template("customers/import.html"), error.status
    customer_import.discard(_stash_folder(), token)
    flash(f"导入完成：新增 {done.imported} 位客户", "success")
    for line, reason in done.skipped[:20]:
        flash(f"第 {line} 行未导入：{reason}", "warning")
    return redirect(url_for("customers.index", sort="created"))
