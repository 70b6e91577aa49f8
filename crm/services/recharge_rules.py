"""充值赠送规则 (admin): 充 min_amount 送 bonus. Rules are switched off, never deleted."""
from crm.errors import Conflict, NotFound
from crm.models import RechargeRule
from crm.money import check_fen, format_yuan
from crm.services import audit, ledger


def active_rules():
    """The rules in force, smallest threshold first."""
    return list(RechargeRule.select().where(RechargeRule.active).order_by(RechargeRule.min_amount))


def describe(rules):
    """The rules in words: "充 ¥500.00 送 ¥50.00；…"."""
    return "；".join(f"充 {format_yuan(r.min_amount)} 送 {format_yuan(r.bonus)}" for r in rules)


def create_rule(actor, min_amount, bonus):
    """Add a rule (amounts in fen, positive; each within the per-operation limit)."""
    min_amount = check_fen(min_amount, ledger.Settings.max_amount, "min_amount")
    bonus = check_fen(bonus, ledger.Settings.max_amount, "bonus")
    if RechargeRule.select().where(RechargeRule.active
                                   & (RechargeRule.min_amount == min_amount)).exists():
        raise Conflict(f"已有“充 {format_yuan(min_amount)}”的规则，请先停用它",
                       code="duplicate_rule", field="min_amount")
    rule = RechargeRule.create(min_amount=min_amount, bonus=bonus,
                               created_by=actor.user.id if actor.user else None)
    audit.record(actor, "recharge_rule.create", "recharge_rule", rule.id, min_amount=min_amount,
                 bonus=bonus)
    return rule


def retire_rule(actor, rule_id):
    """Switch a rule off."""
    rule = RechargeRule.get_or_none(RechargeRule.id == rule_id)
    if rule is None:
        raise NotFound("规则不存在", code="rule_not_found")
    RechargeRule.update(active=False).where(RechargeRule.id == rule_id).execute()
    audit.record(actor, "recharge_rule.retire", "recharge_rule", rule_id,
                 min_amount=rule.min_amount, bonus=rule.bonus)
