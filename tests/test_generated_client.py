"""A generated client works as it is (issue 18.6): openapi-python-client makes a Python client of
the document a real server serves, with docs/openapi-client.yml's ASCII names (the document keeps
its Chinese title for people); pip installs it into a scratch environment, offline; and the core
flow runs through its modules unchanged. The generator may leave out the file answers only."""
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from openapi_python_client.strings import snake_case
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import FIXED_NOW, PASSWORD

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "docs" / "openapi-client.yml"
TITLE = "客户关系管理系统 API"
PROJECT, PACKAGE = "shop-crm-client", "shop_crm_client"
FILE_TYPES = {"application/pdf", "application/zip",
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
OPENING, RECHARGE, CONSUME = Decimal("100.00"), Decimal("50.50"), Decimal("30.25")

# Run in the scratch environment: the core flow through the generated client only. Operations
# are found by operationId (whatever tag folder they are in) and bodies are made by the module's
# own body model (whatever the document calls its schema), so the script depends on the
# document's operations and fields, not on how the generator names the rest.
FLOW = r'''
import datetime
import importlib
import importlib.metadata
import json
import pkgutil
import sys
import typing
import uuid

import shop_crm_client
from shop_crm_client import AuthenticatedClient, Client, api

base_url, username, password, day, opening, recharge, consume = sys.argv[1:]
day = datetime.date.fromisoformat(day)
modules = {info.name.rsplit(".", 1)[-1]: info.name
           for info in pkgutil.walk_packages(api.__path__, api.__name__ + ".")}


def call(name, client, body=None, **arguments):
    """The answer of operation `name` (its module's sync_detailed), which must be a 2xx parsed
    into one of the client's models."""
    module = importlib.import_module(modules[name])
    if body is not None:
        hint = typing.get_type_hints(module.sync_detailed)["body"]
        model = next(t for t in typing.get_args(hint) or (hint,) if hasattr(t, "from_dict"))
        arguments["body"] = model.from_dict(body)
    response = module.sync_detailed(client=client, **arguments)
    assert 200 <= response.status_code < 300, (name, response.status_code, response.content)
    parsed = response.parsed
    assert type(parsed).__module__.startswith("shop_crm_client.models."), (name, parsed)
    return parsed


def key():
    return uuid.uuid4().hex


anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
login = call("login", anonymous, {"username": username, "password": password})
client = AuthenticatedClient(base_url=base_url, token=login.token, raise_on_unexpected_status=True)
customer = call("create_customer", client, {"name": "张三", "phone": "13800000001"})
card = call("open_card", client, {"card_no": "VIP-0001", "amount": opening},
            customer_id=customer.id, idempotency_key=key())
recharged = call("recharge", client, {"amount": recharge},
                 card_id=card.id, idempotency_key=key())
consumed = call("consume", client, {"amount": consume, "customer_id": customer.id},
                card_id=card.id, idempotency_key=key())
read = call("get_card", client, card_id=card.id)
statement = call("customer_statement", client, customer_id=customer.id, start=day, end=day)
distribution = importlib.metadata.distribution("shop-crm-client")
print(json.dumps({
    "name": distribution.metadata["Name"], "requires": distribution.requires,
    "package_file": shop_crm_client.__file__,
    "role": str(login.role.value), "customer": customer.to_dict(), "card": card.to_dict(),
    "recharged": recharged.to_dict(), "consumed": consumed.to_dict(), "read": read.to_dict(),
    "statement": statement.to_dict(),
}))
'''


def _run(command, **options):
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **options)


def _resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        for part in node["$ref"].lstrip("#/").split("/"):
            doc = doc[part]
        node = doc
    return node


def _file_operations(doc):
    """{(METHOD, path): the non-JSON content types of its 2xx answers} for every file answer."""
    found = {}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            types = {kind for code, answer in operation.get("responses", {}).items()
                     if str(code).startswith("2")
                     for kind in (_resolve(doc, answer).get("content") or {})}
            files = {kind for kind in types if not re.search(r"[/+]json$", kind)}
            if files:
                found[(method.upper(), path)] = files
    return found


def _complaints(stderr):
    """The generator's stderr as lines, each JSON dump of a document part taken out."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", stderr)
    decoder, lines, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        if text[at] == "{":
            try:
                at = decoder.raw_decode(text, at)[1]
                continue
            except ValueError:
                pass
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        lines.append(text[at:end].rstrip())
        at = end
    return lines


def _what_was_left_out(stderr, file_operations):
    """({(METHOD, path): content types of answers left out}, {operations left out whole},
    [any other complaint])."""
    omitted, skipped, other, current = {}, set(), [], None
    for line in _complaints(stderr):
        header = re.fullmatch(r"WARNING parsing (\S+) (\S+) within [^.]*\.( Endpoint will not "
                              r"be generated\.)?", line)
        left_out = re.fullmatch(r"Cannot parse response for status code .*? \(Unsupported "
                                r"content_type (.+)\), response will be omitted from generated "
                                r"client", line)
        if header:
            current = (header.group(1), header.group(2))
            if header.group(3):
                skipped.add(current)
        elif left_out and current:
            omitted.setdefault(current, set()).update(left_out.group(1).split(", "))
        elif line.startswith(("Warning(s) encountered while generating",
                              "If you believe this was a mistake")):
            pass
        elif not (current in skipped and current in file_operations):
            other.append(line)  # any other warning or error, or why a JSON operation was dropped
    return omitted, skipped, other


def _can_build_wheels():
    """pip builds the generated setup.py project into a wheel with the installed setuptools
    (--no-build-isolation: nothing downloaded): that needs the `wheel` package, or setuptools
    70.1 or later, which has bdist_wheel itself."""
    if importlib.util.find_spec("wheel"):
        return True
    try:
        return Version(importlib.metadata.version("setuptools")) >= Version("70.1")
    except importlib.metadata.PackageNotFoundError:
        return False


def _scratch_python(where):
    """A new virtual environment that sees this one's installed packages (httpx, attrs, pip,
    setuptools) but not its own project, the way `pip install` of the client would find its
    dependencies; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=60)
    python = where / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                check=True).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    Path(site, "test-environment.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
    return python


@pytest.mark.backends("sqlite")  # the client and the document do not depend on the database
def test_generated_client_installs_and_runs_the_core_flow(live_server, make_user, tmp_path):
    """Generate, pip install and run: log in, a customer, a card opened with money, recharge,
    consume, the card read back and the customer's statement, all through the client."""
    make_user("admin", role="admin", display_name="王店长")
    with urllib.request.urlopen(f"{live_server}/api/openapi.json", timeout=30) as answer:
        doc = json.load(answer)
    assert doc["info"]["title"] == TITLE  # the Chinese title stays for people
    (tmp_path / "openapi.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")

    # The generator's post hooks (ruff check --fix-only, ruff format) run ruff from PATH: the
    # one installed next to this python.
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                                  os.environ.get("PATH", "")])}
    generated = _run([sys.executable, "-m", "openapi_python_client", "generate",
                      "--path", "openapi.json", "--config", str(CONFIG), "--meta", "setup",
                      "--output-path", "client"], cwd=tmp_path, env=env)
    report = f"generator exit {generated.returncode}\n{generated.stdout}\n{generated.stderr}"
    project = tmp_path / "client"
    assert generated.returncode == 0 and (project / PACKAGE / "__init__.py").exists(), report

    # Only file answers may be left out; every JSON operation has its module.
    file_operations = _file_operations(doc)
    omitted, skipped, other = _what_was_left_out(generated.stderr, file_operations)
    assert other == [], f"the generator complained beyond the file answers: {other}\n{report}"
    assert skipped <= set(file_operations), f"JSON operations not generated: {skipped}\n{report}"
    for operation, kinds in omitted.items():  # today: 9 answers of the 8 downloads
        assert operation in file_operations and kinds <= file_operations[operation] & FILE_TYPES, (
            f"{operation}: answers left out that are not known file answers: {kinds}\n{report}")
    made = {path.stem for path in (project / PACKAGE / "api").rglob("*.py")}
    wanted = {snake_case(operation["operationId"])
              for path, item in doc["paths"].items() for method, operation in item.items()
              if method in METHODS and (method.upper(), path) not in skipped}
    assert wanted <= made, f"operations without a module: {sorted(wanted - made)}"

    # pip installs it: an ASCII project name, built offline with what is installed here.
    assert PROJECT.isascii() and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", PROJECT)
    assert PACKAGE.isascii() and PACKAGE.isidentifier()
    assert _can_build_wheels(), (
        "pip cannot build the generated client offline: this environment has neither the "
        "`wheel` package nor setuptools >= 70.1 (bdist_wheel); the [test] extra needs one")
    python = _scratch_python(tmp_path / "venv")
    installed = _run([str(python), "-m", "pip", "install", "--isolated", "--no-index",
                      "--no-deps", "--no-build-isolation", "--no-cache-dir",
                      "--disable-pip-version-check", "--no-input", "--quiet", str(project)])
    assert installed.returncode == 0, f"pip install failed:\n{installed.stdout}\n{installed.stderr}"

    # The core flow, through the installed client only.
    (tmp_path / "flow.py").write_text(FLOW, encoding="utf-8")
    flow = _run([str(python), "flow.py", live_server, "admin", PASSWORD,
                 FIXED_NOW.date().isoformat(), f"{OPENING}", f"{RECHARGE}", f"{CONSUME}"],
                cwd=tmp_path)
    assert flow.returncode == 0, f"the flow failed:\n{flow.stdout}\n{flow.stderr}"
    got = json.loads(flow.stdout)
    assert got["name"] == PROJECT
    for requirement in map(Requirement, got["requires"]):  # what it needs is installed here
        assert requirement.specifier.contains(importlib.metadata.version(requirement.name)), (
            requirement, importlib.metadata.version(requirement.name))
    assert Path(got["package_file"]).is_relative_to(tmp_path / "venv")
    assert got["role"] == "admin"
    customer, card = got["customer"], got["card"]
    assert (customer["name"], customer["phone"]) == ("张三", "13800000001")
    assert (card["card_no"], card["customer_id"], card["status"], card["balance"]) == (
        "VIP-0001", customer["id"], "active", f"{OPENING}")
    after = OPENING + RECHARGE - CONSUME
    assert got["recharged"]["balance"] == f"{OPENING + RECHARGE}"
    assert (got["consumed"]["amount"], got["consumed"]["balance"]) == (f"{CONSUME}", f"{after}")
    assert got["read"] == {"id": card["id"], "card_no": "VIP-0001", "customer_id": customer["id"],
                           "status": "active", "balance": f"{after}", "paid_balance": f"{after}",
                           "bonus_balance": "0.00"}
    statement = got["statement"]
    assert statement["totals"] == {
        "recharge": f"{OPENING + RECHARGE}", "bonus": "0.00", "consume": f"{CONSUME}",
        "reversal": "0.00", "refund": "0.00", "net": f"{after}", "opening": "0.00",
        "closing": f"{after}"}
    assert [(e["card_no"], e["business_type"], e["amount"], e["balance"])
            for e in statement["entries"]] == [
        ("VIP-0001", "recharge", f"{OPENING}", f"{OPENING}"),
        ("VIP-0001", "recharge", f"{RECHARGE}", f"{OPENING + RECHARGE}"),
        ("VIP-0001", "consume", f"{-CONSUME}", f"{after}")]
