"""Customer types (admin): list, create, edit, delete."""
from flask import Blueprint, flash, redirect, render_template, request, url_for

from crm.errors import CrmError
from crm.http import actor, admin_required
from crm.services import customer_types
from crm.web import flash_error

bp = Blueprint("customer_types", __name__, url_prefix="/customer-types")


def _list_page(status=200, **context):
    return render_template("customer_types/index.html", types=customer_types.list_types(),
                           **context), status


@bp.route("")
@admin_required
def index():
    """All types with how many customers use each, and the form for a new one."""
    return _list_page(form={})


@bp.route("", methods=["POST"])
@admin_required
def create():
    """Create a type."""
    try:
        ctype = customer_types.create_type(actor(), request.form)
    except CrmError as error:
        return _list_page(error.status, form=request.form, error=error)
    flash(f"已新增客户类型“{ctype.name}”", "success")
    return redirect(url_for("customer_types.index"))


@bp.route("/<int:type_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(type_id):
    """Edit a type."""
    ctype = customer_types.get_type(type_id)
    if request.method == "POST":
        try:
            customer_types.update_type(actor(), type_id, request.form)
        except CrmError as error:
            return render_template("customer_types/edit.html", ctype=ctype, form=request.form,
                                   error=error), error.status
        flash("已保存", "success")
        return redirect(url_for("customer_types.index"))
    form = {"name": ctype.name, "description": ctype.description, "discount": ctype.discount or ""}
    return render_template("customer_types/edit.html", ctype=ctype, form=form)


@bp.route("/<int:type_id>/delete", methods=["POST"])
@admin_required
def delete(type_id):
    """Delete a type that no customer uses."""
    try:
        customer_types.delete_type(actor(), type_id)
    except CrmError as error:
        flash_error(error)
        return _list_page(error.status, form={})
    flash("已删除", "success")
    return redirect(url_for("customer_types.index"))
