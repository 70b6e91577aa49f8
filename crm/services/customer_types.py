"""Customer types (客户类型): VIP客户, 普通客户 … with an optional member discount. Admin only."""
from peewee import JOIN, IntegrityError, fn

from crm.clock import now
from crm.db import db
from crm.errors import Conflict, NotFound
from crm.models import Customer, CustomerType
from crm.services import audit, names, validate


def clean(data):
    """Checked values of a type form or JSON body."""
    return {
        "name": names.type_name(validate.text(data.get("name"), "类型名称", "name", 50,
                                              required=True)),
        "description": validate.text(data.get("description"), "说明", "description", 200),
        "discount": validate.whole_number(data.get("discount"), "折扣", "discount", 1, 100),
    }


def snapshot(ctype):
    """The audited fields of a type."""
    return {"name": ctype.name, "description": ctype.description, "discount": ctype.discount}


def list_types():
    """All types by name, each with `customer_count` (one query)."""
    return list(CustomerType
                .select(CustomerType, fn.COUNT(Customer.id).alias("customer_count"))
                .join(Customer, JOIN.LEFT_OUTER, on=(Customer.type == CustomerType.id))
                .group_by(CustomerType)
                .order_by(CustomerType.name))


def get_type(type_id):
    """The type, or NotFound."""
    ctype = CustomerType.get_or_none(CustomerType.id == type_id)
    if ctype is None:
        raise NotFound("客户类型不存在", code="customer_type_not_found")
    return ctype


def _name_taken(name):
    return Conflict(f"客户类型“{name}”已存在", code="duplicate_type_name", field="name")


def create_type(actor, data):
    """Create a type; a taken name is a Conflict."""
    values = clean(data)
    try:
        with db.atomic():
            ctype = CustomerType.create(**values)
            audit.record(actor, "customer_type.create", "customer_type", ctype.id,
                         after=snapshot(ctype))
    except IntegrityError:
        raise _name_taken(values["name"]) from None
    return ctype


def update_type(actor, type_id, data):
    """Change a type's name, description or discount."""
    values = clean(data)
    try:
        with db.atomic():
            ctype = get_type(type_id)
            before = snapshot(ctype)
            (CustomerType.update(**values, updated_at=now())
             .where(CustomerType.id == ctype.id).execute())
            changes = audit.diff(before, values)
            if changes:
                audit.record(actor, "customer_type.update", "customer_type", ctype.id,
                             changes=changes)
    except IntegrityError:
        raise _name_taken(values["name"]) from None
    return get_type(type_id)


def _in_use(ctype, used):
    return Conflict(f"客户类型“{ctype.name}”仍有 {used} 位客户在用（含已归档客户），不能删除；"
                    "请先把这些客户改为其他类型", code="customer_type_in_use")


def delete_type(actor, type_id):
    """Delete a type no customer uses; otherwise say how many use it."""
    ctype = get_type(type_id)
    try:
        with db.atomic():
            used = Customer.select().where(Customer.type == ctype.id).count()
            if used:
                raise _in_use(ctype, used)
            CustomerType.delete().where(CustomerType.id == ctype.id).execute()
            audit.record(actor, "customer_type.delete", "customer_type", ctype.id,
                         before=snapshot(ctype))
    except IntegrityError:  # a customer was given this type in the meantime
        raise _in_use(ctype, 1) from None
