"""The package's shape (issue 18.3, 18.5): which module may import which."""
import ast
from pathlib import Path

from crm.config import PROJECT_ROOT


def _imports(path):
    """The module names a file imports."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_the_api_does_not_import_the_web_package():
    """Pages and API share request helpers through crm.http: no module of crm/api imports
    crm.web, so either can change its shape without the other."""
    found = [(path.name, name) for path in sorted(Path(PROJECT_ROOT, "crm", "api").glob("*.py"))
             for name in _imports(path) if name == "crm.web" or name.startswith("crm.web.")]
    assert found == []


def test_pages_take_the_request_helpers_from_crm_http_itself():
    """Each page module imports the shared request helpers from crm.http, where they live, and
    takes from crm.web only what crm.web defines (flash_error …): no helper reaches the pages by
    two roads, and crm.web re-exports nothing."""
    package = Path(PROJECT_ROOT, "crm", "web", "__init__.py")
    tree = ast.parse(package.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body
               if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    defined |= {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    modules = {path.stem for path in package.parent.glob("*.py")}  # the page modules
    borrowed = []
    for path in sorted(package.parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "crm.web":
                borrowed += [(path.name, a.name) for a in node.names
                             if a.name not in defined | modules]
    assert borrowed == []
    assert "noqa: F401" not in package.read_text(encoding="utf-8")


def test_the_launcher_does_not_import_the_command_line():
    """crm.cli imports crm.launcher for `crm run`; the launcher never imports crm.cli back (the
    double-click's entry that needs both is crm.start)."""
    assert "crm.cli" not in _imports(Path(PROJECT_ROOT, "crm", "launcher.py"))


MAX_LINES = 450


def test_no_module_is_over_450_lines():
    """Smaller rooms (issue 18.5): every module under crm/ fits in 450 lines."""
    long = {str(path.relative_to(PROJECT_ROOT)): n
            for path in Path(PROJECT_ROOT, "crm").rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_every_api_operation_is_declared_once(app):
    """Every /api/v1 route is a declared operation (crm.api.declare), each once, with a unique
    operationId: the document, the request check and the answer come from one place."""
    from crm.api.declare import OPERATIONS

    routes = {(rule.rule, method) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    declared = [("/api" + d.rule, d.method) for d in OPERATIONS]
    assert len(declared) == len(set(declared))
    assert set(declared) == routes
    ids = [d.operation_id for d in OPERATIONS]
    assert len(ids) == len(set(ids))
