"""The audit log: who did what, when, from where. Rows are only ever added."""
import json

from crm.models import AuditLog


def record(actor, action, object_type="", object_id="", **detail):
    """Append one audit row; `detail` is stored as JSON (e.g. before=…, after=…)."""
    return AuditLog.create(
        user=actor.user,
        username=actor.username,
        ip=actor.ip or "",
        action=action,
        object_type=object_type,
        object_id=str(object_id or ""),
        detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else "",
    )


def diff(before, after):
    """Field-by-field changes between two dicts: {field: [old, new]} for the fields that differ."""
    return {k: [before.get(k), after.get(k)] for k in after if before.get(k) != after.get(k)}
