"""The ledger's key and what is signed with it: the key in force (picked up again when another
server process of this instance adopted a restored backup's key), another PC's recovery key, the
HMAC-SHA256 seal of each entry in a card's chain and of each card's owner, a backup manifest's
signature and the key's fingerprint. Posting (crm.services.ledger) seals with these, the
verification (crm.services.ledger_verification) checks with them."""
import contextlib
import contextvars
import hashlib
import hmac
import json
import os
import re
from pathlib import Path

from crm import config as crm_config
from crm.db import db, executemany
from crm.errors import CrmError, ValidationError

_RECOVERY_KEY = re.compile(r"^[0-9a-f]{64}$")  # what ensure_config_file makes: token_hex(32)


class Settings:
    """The ledger key in force; crm.services.ledger.configure sets it from the configuration."""

    key = b""
    key_file = ""  # the instance config file the key was read from ("" : fixed by env or test)
    key_stamp = None  # that file's (inode, mtime) when the key was read


def configure(config):
    """Take the ledger key from the app configuration."""
    Settings.key = str(config["LEDGER_KEY"]).encode("utf-8")
    Settings.key_file = config.get("LEDGER_KEY_FILE", "")
    Settings.key_stamp = _file_stamp(Settings.key_file)


def _file_stamp(path):
    """(inode, mtime) of a file, None when it cannot be read; every rewrite of the config file
    (a new file put in place) changes it."""
    if not path:
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns


def current_key():
    """The ledger key in force. Several server processes share one instance folder: when another
    of them restored a backup with another PC's key, it wrote that key into the config file
    (before its restore committed), and this process picks it up here, before it seals anything
    on the restored chains. One stat() per money movement."""
    if Settings.key_file:
        stamp = _file_stamp(Settings.key_file)
        if stamp is not None and stamp != Settings.key_stamp:
            key = crm_config.read_value(Settings.key_file, "LEDGER_KEY")
            if key:
                Settings.key = key.encode("utf-8")
            Settings.key_stamp = stamp
    return Settings.key


def recovery_key(value):
    """Another PC's ledger key as typed or read from its file — 64 hexadecimal digits, as
    `crm recovery-key` prints it — as bytes; None when blank. Anything else is refused, so a key
    can never carry other settings into the config file it is written to."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip().lower()
    if not text:
        return None
    if not _RECOVERY_KEY.match(text):
        raise ValidationError("恢复密钥格式不正确：应为 64 位十六进制字符"
                              "（即 crm recovery-key 打印的那一行）",
                              code="invalid_recovery_key", field="recovery_key")
    return text.encode("ascii")


def adopt_key(key):
    """Seal with `key` from now on, in this process and, through the instance config file, in
    every other server process of this instance. Returns the key it replaced."""
    previous = current_key()
    if Settings.key_file:
        try:
            crm_config.set_value(Path(Settings.key_file).parent, "LEDGER_KEY", key.decode("utf-8"))
        except OSError as error:
            raise CrmError(f"无法把账本密钥写入配置文件 {Settings.key_file}（{error.strerror or error}），"
                           "未做任何改动", code="config_not_writable", status=409) from None
        Settings.key_stamp = _file_stamp(Settings.key_file)
    Settings.key = key
    return previous


# --- the chain ----------------------------------------------------------------------------------

def _message(entry, prev_hash):
    """The bytes an entry's HMAC covers: every field that matters, in a fixed order."""
    parts = (entry["card"], entry["customer"], entry["seq"], entry["business_type"],
             entry["amount"], entry["paid_delta"], entry["bonus_delta"], entry["balance_after"],
             entry["paid_after"], entry["bonus_after"], entry["payment_method"],
             entry["reverses"] or "", entry["operator"], entry["request_id"], entry["remark"],
             _stamp(entry["created_at"]), prev_hash)
    return "\x1f".join(str(p) for p in parts).encode("utf-8")


def _stamp(value):
    """A time as sealed: "YYYY-MM-DD HH:MM:SS" (SQLite hands back text, MySQL a datetime)."""
    if isinstance(value, str):
        return value[:19]
    return value.strftime("%Y-%m-%d %H:%M:%S")


def seal(entry, prev_hash, key=None):
    """The HMAC-SHA256 (hex) of an entry linked to the previous entry's hash."""
    return hmac.new(key or current_key(), _message(entry, prev_hash), hashlib.sha256).hexdigest()


# The columns of t_card_record in the order every bulk write and every verification reads them.
RECORD_COLUMNS = ("id", "card_id", "customer_id", "seq", "business_type", "amount", "paid_delta",
                  "bonus_delta", "balance_after", "paid_after", "bonus_after", "payment_method",
                  "reverses_id", "operator_id", "request_id", "remark", "created_at", "prev_hash",
                  "hash")


def _record_fields(record):
    """A stored CardRecord as the dict `seal` reads."""
    return {"card": record.card_id, "customer": record.customer_id, "seq": record.seq,
            "business_type": record.business_type, "amount": record.amount,
            "paid_delta": record.paid_delta, "bonus_delta": record.bonus_delta,
            "balance_after": record.balance_after, "paid_after": record.paid_after,
            "bonus_after": record.bonus_after, "payment_method": record.payment_method,
            "reverses": record.reverses_id, "operator": record.operator_id,
            "request_id": record.request_id, "remark": record.remark,
            "created_at": record.created_at}


# --- who owns what ------------------------------------------------------------------------------

_sealing_key = contextvars.ContextVar("sealing_key", default=None)


@contextlib.contextmanager
def sealing_with(key):
    """Seal owners with `key` inside the block (a backup from another PC being checked, whose
    migrations seal its cards with that PC's key); None: the instance's key."""
    token = _sealing_key.set(key)
    try:
        yield
    finally:
        _sealing_key.reset(token)


def owner_seal(card_id, card_no, customer_id, key=None):
    """The HMAC (hex) that binds a card's number and customer to the card."""
    message = "\x1f".join(("card-owner", str(card_id), str(card_no), str(customer_id)))
    return hmac.new(key or current_key(), message.encode("utf-8"), hashlib.sha256).hexdigest()


def seal_owners(card_ids=None, database=None, key=None):
    """Write the owner seal of the cards `card_ids` — new cards, in the transaction that made
    them — or, with None, of every card that has none yet (the upgrade: migration 0010, which
    seals the owners the cards have then). Returns how many were sealed."""
    database = database or db.obj
    key = key or _sealing_key.get() or current_key()
    p = database.param
    if card_ids is None:
        rows = database.execute_sql("SELECT id, card_no, customer_id FROM t_card "
                                    "WHERE owner_seal = ''").fetchall()
    else:
        ids, rows = list(card_ids), []
        for start in range(0, len(ids), 500):  # within SQLite's limit of bound parameters
            chunk = ids[start:start + 500]
            rows += database.execute_sql(f"SELECT id, card_no, customer_id FROM t_card WHERE id "
                                         f"IN ({', '.join([p] * len(chunk))})", chunk).fetchall()
    if rows and not key:
        raise RuntimeError("the ledger key is not configured: cannot seal card owners")
    executemany(database, f"UPDATE t_card SET owner_seal = {p} WHERE id = {p}",
                ((owner_seal(i, no, customer, key), i) for i, no, customer in rows))
    return len(rows)


# --- backups and the key's fingerprint ----------------------------------------------------------

def sign_manifest(manifest, key=None):
    """The signature of a backup's manifest: an HMAC with the ledger key over all of it (save
    the signature itself) — every table's digest and row count is in it, so no byte of a
    backup can change without it."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hmac.new(key or current_key(), b"crm backup manifest\x1f" + text.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def manifest_signed(manifest, key=None):
    """True when the manifest carries a signature made with `key` (default: this instance's)."""
    signature = manifest.get("signature")
    return isinstance(signature, str) and hmac.compare_digest(sign_manifest(manifest, key),
                                                              signature)


def key_fingerprint(key=None):
    """A short fingerprint of the ledger key, to tell whether two instances share it (the key
    itself never leaves the config file)."""
    return hmac.new(key or current_key(), b"crm ledger key check", hashlib.sha256).hexdigest()[:16]
