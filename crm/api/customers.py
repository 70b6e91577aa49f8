"""API: customer types and customers."""
from flask import jsonify, request

from crm.api import bp, json_body
from crm.http import actor, admin_required, requires, uploaded_file, xlsx_response
from crm.money import format_fen
from crm.services import customer_import, customer_types, customers


def type_json(ctype):
    """A customer type as the API shows it."""
    return {"id": ctype.id, "name": ctype.name, "description": ctype.description,
            "discount": ctype.discount,
            "customer_count": getattr(ctype, "customer_count", None)}


def customer_json(c):
    """A customer as the API shows it."""
    return {"id": c.id, "customer_no": c.customer_no, "name": c.name, "gender": c.gender,
            "phone": c.phone, "address": c.address, "type_id": c.type_id,
            "type_name": c.type.name if c.type_id else None,
            "birthday": c.birthday.isoformat() if c.birthday else None, "remark": c.remark,
            "archived": bool(c.archived), "created_at": c.created_at.isoformat(" "),
            "last_visit_at": c.last_visit_at.isoformat(" ") if c.last_visit_at else None}


@bp.route("/v1/customer-types")
def list_customer_types():
    """All customer types with how many customers use each."""
    return jsonify(items=[type_json(t) for t in customer_types.list_types()])


@bp.route("/v1/customer-types", methods=["POST"])
@admin_required
def create_customer_type():
    """Create a customer type (admin)."""
    return jsonify(type_json(customer_types.create_type(actor(), json_body()))), 201


@bp.route("/v1/customer-types/<int:type_id>", methods=["PATCH"])
@admin_required
def update_customer_type(type_id):
    """Change a customer type (admin); fields not sent keep their values."""
    current = customer_types.get_type(type_id)
    data = {"name": current.name, "description": current.description,
            "discount": current.discount, **json_body()}
    return jsonify(type_json(customer_types.update_type(actor(), type_id, data)))


@bp.route("/v1/customer-types/<int:type_id>", methods=["DELETE"])
@admin_required
def delete_customer_type(type_id):
    """Delete a customer type no customer uses (admin)."""
    customer_types.delete_type(actor(), type_id)
    return jsonify(ok=True)


@bp.route("/v1/customers")
def list_customers():
    """Search customers: q (name part, phone part, number), type_id, archived (0/1/all), sort, page."""
    filters = customers.parse_filters(request.args)
    rows, total = customers.search(**filters)
    return jsonify(items=[customer_json(c) for c in rows], total=total, page=filters["page"],
                   per_page=customers.PER_PAGE)


@bp.route("/v1/customers/export.xlsx")
@requires("export")
def export_customers():
    """Every customer under the list's filters (q, type_id, archived, sort; all pages) as Excel."""
    data = customers.export_xlsx(customers.parse_filters(request.args))
    return xlsx_response(data, customers.EXPORT_FILENAME)


@bp.route("/v1/customers/import/template.xlsx")
@requires("edit_customers")
def customer_import_template():
    """The blank Excel template for POST /v1/customers/import."""
    return xlsx_response(customer_import.template(), customer_import.TEMPLATE_FILENAME)


@bp.route("/v1/customers", methods=["POST"])
@requires("edit_customers")
def create_customer():
    """Create a customer."""
    customer = customers.create_customer(actor(), json_body())
    return jsonify(customer_json(customers.get_customer(customer.id))), 201


@bp.route("/v1/customers/<int:customer_id>")
def get_customer(customer_id):
    """One customer."""
    return jsonify(customer_json(customers.get_customer(customer_id)))


@bp.route("/v1/customers/<int:customer_id>", methods=["PATCH"])
@requires("edit_customers")
def update_customer(customer_id):
    """Change the fields sent."""
    return jsonify(customer_json(customers.update_customer(actor(), customer_id, json_body())))


@bp.route("/v1/customers/<int:customer_id>/archive", methods=["POST"])
@requires("edit_customers")
def archive_customer(customer_id):
    """Archive a customer (hidden from the list, never deleted)."""
    return jsonify(customer_json(customers.set_archived(actor(), customer_id, True)))


@bp.route("/v1/customers/<int:customer_id>/restore", methods=["POST"])
@requires("edit_customers")
def restore_customer(customer_id):
    """Restore an archived customer."""
    return jsonify(customer_json(customers.set_archived(actor(), customer_id, False)))


@bp.route("/v1/customers/import", methods=["POST"])
@requires("edit_customers")
def import_customers():
    """Upload an .xlsx (multipart field `file`). Without confirm=1: the check only. With
    confirm=1: import every valid row, in confirmed parts of 1,000 rows, each all or nothing.
    create_types=1 creates unknown types."""
    filename, data = uploaded_file()
    create_types = request.args.get("create_types") in ("1", "true")
    if request.args.get("confirm") in ("1", "true"):
        done = customer_import.run(actor(), data, filename, create_types=create_types)
        return jsonify(imported=done.imported, cards=done.cards, parts=done.parts,
                       skipped=[{"line": line, "reason": reason} for line, reason in done.skipped]
                       ), 201
    preview = customer_import.preview(data, create_types=create_types)
    return jsonify(valid=len(preview.valid_rows), unknown_types=preview.unknown_types,
                   opening_total=format_fen(preview.opening_total),
                   bad_rows=[{"line": r.line, "reasons": r.problems(create_types)}
                             for r in preview.bad_rows])
