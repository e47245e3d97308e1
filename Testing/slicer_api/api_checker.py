"""A static check of a scripted module's Slicer API calls against ``slicer_api.json`` (no Slicer needed).

It parses each file with ``ast`` and follows types where they are cheap to know: ``slicer.util.X``,
``slicer.vtkX`` (static members, constructors), nodes made by ``AddNewNodeByClass("vtkMRML…")``,
parameters and returns annotated with Slicer classes, declared ``returns`` of indexed methods (a lower
bound), ``self.ui.<objectName>`` against the ``.ui`` file, ``self`` of ScriptedLoadableModule classes.
A name that does not exist where the index is complete is an error; a name the index does not cover is
"unknown" (reported, not failed).
"""
from __future__ import annotations

import ast
import dataclasses
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path

from api_index import SlicerApiIndex

NODE_FACTORIES = ("AddNewNodeByClass", "CreateNodeByClass", "AddNewNodeByClassWithID")


@dataclasses.dataclass(frozen=True)
class Finding:
    path: str
    line: int
    severity: str  # "error" fails the check; "unknown" and "warning" are reported
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


@dataclasses.dataclass(frozen=True)
class Ref:
    """What an expression is: the slicer module, a util function, a VTK class or instance, a widget…"""

    kind: str
    name: str = ""
    exact: bool = True
    detail: str = ""


ROOT, UTIL, MODULES, PNW, UI = Ref("slicer"), Ref("slicer.util"), Ref("slicer.modules"), Ref("parameterNodeWrapper"), Ref("ui")


def ui_object_classes(path: Path) -> dict[str, str]:
    """objectName → class of every widget, layout and action in a Qt Designer file."""
    root = ElementTree.parse(path).getroot()
    return {e.get("name"): e.get("class", "QAction") for tag in ("widget", "layout", "action") for e in root.iter(tag) if e.get("name")}


class ApiChecker:
    """Check files of one module; ``returns`` collects annotated return types across all of them."""

    def __init__(self, index: SlicerApiIndex, ui_classes: dict[str, str] | None = None, own_modules: Iterable[str] = ()) -> None:
        self.index = index
        self.ui_classes = ui_classes or {}
        self.own_modules = {m.lower() for m in own_modules}
        self.returns: dict[str, Ref] = {}
        self.self_types: dict[str, dict[str, Ref]] = {}
        self.findings: list[Finding] = []
        self.checked_calls = 0  # calls matched to an index entry (shows the check is not vacuous)
        self._path = ""

    def check_files(self, paths: Iterable[Path], root: Path) -> list[Finding]:
        trees = {p: ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for p in paths}
        for tree in trees.values():
            self._collect_returns(tree)
        for path, tree in trees.items():
            self._path = str(path.relative_to(root))
            module_env = self._module_env(tree)
            self._visit_body(tree.body, module_env, None)
        return sorted(set(self.findings), key=lambda f: (f.path, f.line, f.message))

    def _report(self, node: ast.AST, severity: str, message: str) -> None:
        self.findings.append(Finding(self._path, getattr(node, "lineno", 0), severity, message))

    # --- names bound by imports, annotations and assignments -------------------------------------
    def _module_env(self, tree: ast.Module) -> dict[str, Ref]:
        env: dict[str, Ref] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "slicer":
                        env[alias.asname or "slicer"] = ROOT
                    elif alias.name == "slicer.util":
                        env[alias.asname or "slicer"] = UTIL if alias.asname else ROOT
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slicer"):
                for alias in node.names:
                    env[alias.asname or alias.name] = self._imported(node, alias.name)
        return {k: v for k, v in env.items() if v is not None}

    def _imported(self, node: ast.ImportFrom, name: str) -> Ref | None:
        if node.module == "slicer.parameterNodeWrapper" and name not in self.index.parameter_node_wrapper_names:
            self._report(node, "error", f"slicer.parameterNodeWrapper has no {name!r}")
        if node.module == "slicer.util":
            return self._attribute(UTIL, name, node)
        if node.module == "slicer" and name != "*":
            return self._attribute(ROOT, name, node)
        return None

    def _collect_returns(self, tree: ast.Module) -> None:
        """Return annotations naming Slicer classes, so calls of the module's own helpers are typed."""
        findings = list(self.findings)
        env = self._module_env(tree)
        self.findings = findings  # import problems are reported once, in the main pass
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
                ref = self._annotation(node.returns, env)
                if ref is not None:
                    self.returns[node.name] = ref

    def _annotation(self, node: ast.expr | None, env: dict[str, Ref]) -> Ref | None:
        """The instance type an annotation names (``vtkMRMLSegmentationNode | None`` → that node)."""
        if isinstance(node, ast.BinOp):
            return self._annotation(node.left, env) or self._annotation(node.right, env)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self._annotation(ast.parse(node.value, mode="eval").body, env)
        if isinstance(node, ast.Name) and node.id in env and env[node.id].kind == "vtk_class":
            return Ref("vtk", env[node.id].name)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and env.get(node.value.id) == ROOT and self.index.vtk_class(node.attr):
            return Ref("vtk", node.attr)
        return None

    # --- statements -----------------------------------------------------------------------------
    def _visit_body(self, body: list[ast.stmt], env: dict[str, Ref], self_ref: Ref | None) -> None:
        for statement in body:
            self._visit_statement(statement, env, self_ref)

    def _visit_statement(self, node: ast.stmt, env: dict[str, Ref], self_ref: Ref | None) -> None:
        if isinstance(node, ast.ClassDef):
            self._visit_class(node, env)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local = dict(env)
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            for index, argument in enumerate(arguments):
                is_self = index == 0 and self_ref is not None and argument.arg == "self"
                ref = self_ref if is_self else self._annotation(argument.annotation, env)
                if ref is not None:
                    local[argument.arg] = ref
                else:
                    local.pop(argument.arg, None)
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                self._infer(default, env)
            self._visit_body(node.body, local, self_ref)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            value = self._infer(node.value, env) if node.value is not None else None
            if isinstance(node, ast.AnnAssign):
                value = self._annotation(node.annotation, env) or value
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                self._bind(target, value, env)
        else:
            if isinstance(node, (ast.For, ast.AsyncFor)):
                self._bind(node.target, None, env)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self._visit_statement(child, env, self_ref)
                elif isinstance(child, ast.expr):
                    self._infer(child, env)
                else:
                    for grandchild in ast.iter_child_nodes(child):
                        if isinstance(grandchild, ast.stmt):
                            self._visit_statement(grandchild, env, self_ref)
                        elif isinstance(grandchild, ast.expr):
                            self._infer(grandchild, env)

    def _bind(self, target: ast.expr, value: Ref | None, env: dict[str, Ref]) -> None:
        if isinstance(target, ast.Name):
            if value is None:
                env.pop(target.id, None)
            else:
                env[target.id] = value
        elif isinstance(target, ast.Attribute):
            self._infer(target.value, env)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._bind(element, None, env)

    def _visit_class(self, node: ast.ClassDef, env: dict[str, Ref]) -> None:
        """``self`` gets the types ``__init__`` gives its attributes; with known bases, its members are checked."""
        members: set[str] | None = set()
        for base in node.bases:
            base_name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
            known = self.index.scripted_base_members(base_name)
            known = known if known is not None else self.index.util_class_members(base_name)
            members = None if known is None or members is None else members | known
        for item in ast.walk(node):
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                members = None if members is None else members | {item.name}
            elif isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) and item.value.id == "self" and isinstance(item.ctx, ast.Store):
                members = None if members is None else members | {item.attr}
            elif isinstance(item, (ast.Assign, ast.AnnAssign)) and item in node.body:
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                members = None if members is None else members | {t.id for t in targets if isinstance(t, ast.Name)}
        checked = members is not None and bool(node.bases)
        self.self_types[node.name] = self._init_attribute_types(node, env)
        self_ref = Ref("self", node.name, exact=checked, detail=",".join(sorted(members or ())))
        self._visit_body(node.body, dict(env), self_ref)

    def _init_attribute_types(self, node: ast.ClassDef, env: dict[str, Ref]) -> dict[str, Ref]:
        """``self.scene = scene`` with ``scene: vtkMRMLScene`` in ``__init__`` types ``self.scene``."""
        types: dict[str, Ref] = {}
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                params = {a.arg: self._annotation(a.annotation, env) for a in item.args.args + item.args.kwonlyargs}
                for statement in ast.walk(item):
                    if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Name):
                        for target in statement.targets:
                            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                                if params.get(statement.value.id) is not None:
                                    types[target.attr] = params[statement.value.id]
        return types

    # --- expressions ----------------------------------------------------------------------------
    def _infer(self, node: ast.expr, env: dict[str, Ref]) -> Ref | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return Ref("str", node.value)
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._infer(node.value, env)
            if base is not None and base.kind == "self" and node.attr == "ui":
                return UI
            return self._attribute(base, node.attr, node) if base is not None else None
        if isinstance(node, ast.Call):
            return self._call(node, env)
        if isinstance(node, ast.Lambda):
            local = {k: v for k, v in env.items() if k not in {a.arg for a in node.args.args}}
            self._infer(node.body, local)
            return None
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self._infer(child, env)
            elif isinstance(child, ast.comprehension):
                self._infer(child.iter, env)
                for condition in child.ifs:
                    self._infer(condition, env)
        return None

    def _attribute(self, base: Ref | None, attr: str, node: ast.AST) -> Ref | None:
        if base is None:
            return None
        if base == ROOT:
            return self._slicer_attribute(attr, node)
        if base == UTIL:
            if self.index.util_member(attr) is None:
                self._report(node, "error", f"slicer.util.{attr} does not exist")
                return None
            return Ref("util_function", attr)
        if base == MODULES:
            if attr not in self.index.module_attributes and attr not in self.own_modules:
                self._report(node, "unknown", f"slicer.modules.{attr} is not a built-in module (an extension's?)")
            return Ref("module", attr)
        if base.kind == "module":
            return Ref("module_logic", base.name) if attr == "logic" else None
        if base == UI:
            if attr not in self.ui_classes:
                self._report(node, "error", f"self.ui.{attr}: no object named {attr!r} in the .ui file")
                return None
            return Ref("qt", self.ui_classes[attr])
        if base.kind == "qt":
            return self._qt_attribute(base, attr, node)
        if base.kind == "self":
            if attr in self.self_types.get(base.name, {}):
                return self.self_types[base.name][attr]
            if base.exact and attr not in base.detail.split(","):
                self._report(node, "error", f"self.{attr} is defined neither in {base.name} nor in its Slicer base classes")
            return None
        if base.kind in ("vtk_class", "vtk"):
            return self._vtk_attribute(base, attr, node)
        return None

    def _slicer_attribute(self, attr: str, node: ast.AST) -> Ref | None:
        named = {"util": UTIL, "modules": MODULES, "parameterNodeWrapper": PNW, "mrmlScene": Ref("vtk", "vtkMRMLScene")}
        if attr in named:
            return named[attr]
        if self.index.vtk_class(attr):
            return Ref("vtk_class", attr)
        if self.index.qt_widget(attr):
            return Ref("qt_class", attr)
        if attr != "app":
            self._report(node, "unknown", f"slicer.{attr} is not in the index")
        return None

    def _qt_attribute(self, base: Ref, attr: str, node: ast.AST) -> Ref | None:
        if not self.index.qt_widget(base.name):
            return None  # a Qt class (QPushButton…): members come from PythonQt, not indexed
        kind = self.index.qt_member(base.name, attr)
        if kind == "cpp_only":
            self._report(node, "error", f"{base.name}.{attr} is C++ only (not callable from Python); use its property")
        elif kind is None:
            self._report(node, "unknown", f"{base.name}.{attr} is not indexed (a Qt base-class member?)")
        return None

    def _vtk_attribute(self, base: Ref, attr: str, node: ast.AST) -> Ref | None:
        if not self.index.vtk_class(base.name):
            return None
        if self.index.find_method(base.name, attr) is not None:
            return Ref("static_method" if base.kind == "vtk_class" else "method", base.name, base.exact, attr)
        if self.index.has_class_constant(base.name, attr):
            return None
        if not base.exact and self.index.subclasses_with_method(base.name, attr):
            self._report(node, "unknown", f"{attr} is not on {base.name}, only on subclasses: {', '.join(self.index.subclasses_with_method(base.name, attr))}")
            return None
        self._report(node, "error", f"{base.name} has no member {attr!r}")
        return None

    def _call(self, node: ast.Call, env: dict[str, Ref]) -> Ref | None:
        callee = self._infer(node.func, env)
        for argument in [*node.args, *(k.value for k in node.keywords)]:
            self._infer(argument, env)
        if callee is None:
            return self.returns.get(node.func.id) if isinstance(node.func, ast.Name) and node.func.id not in env else None
        if callee.kind == "util_function":
            self._check_python_call(node, callee.name, self.index.util_member(callee.name).get("params"))
        elif callee.kind == "vtk_class":
            if not self.index.vtk_class(callee.name)["instantiable_from_python"]:
                self._report(node, "error", f"{callee.name} cannot be created from Python (abstract)")
            return Ref("vtk", callee.name)
        elif callee.kind in ("method", "static_method"):
            return self._check_vtk_call(node, callee, env)
        elif callee.kind == "module_logic":
            logic = self.index.module_logic_class(callee.name)
            return Ref("vtk", logic) if logic and self.index.vtk_class(logic) else None
        return None

    def _string(self, node: ast.expr, env: dict[str, Ref]) -> str | None:
        """A string literal, or a name bound to one (``SEGMENTATION_CLASS = "vtkMRMLSegmentationNode"``)."""
        ref = self._infer(node, env)
        return ref.name if ref is not None and ref.kind == "str" else None

    def _check_vtk_call(self, node: ast.Call, callee: Ref, env: dict[str, Ref]) -> Ref | None:
        self.checked_calls += 1
        method = self.index.find_method(callee.name, callee.detail)
        label = f"{callee.name}.{callee.detail}"
        if callee.kind == "static_method" and not method.get("static"):
            self._report(node, "error", f"{label} is not static: call it on an instance")
        if method.get("wrapped") is False:
            self._report(node, "error", f"{label} is not callable from Python ({method.get('not_wrapped_reason', 'not wrapped')})")
        if method.get("deprecated"):
            self._report(node, "warning", f"{label} is deprecated")
        low, high = method["nargs"]
        count = len(node.args) + len(node.keywords)
        if not any(isinstance(a, ast.Starred) for a in node.args) and (count < low or (high is not None and count > high)):
            self._report(node, "error", f"{label} takes {low}..{high} arguments, {count} given")
        made = self._string(node.args[0], env) if callee.detail in NODE_FACTORIES and node.args else None
        if made is not None:
            if self.index.vtk_class(made):
                return Ref("vtk", made)
            self._report(node, "unknown", f"node class {made} is not indexed")
            return None
        returned = method.get("returns")
        return Ref("vtk", returned, exact=False) if returned and self.index.vtk_class(returned) else None

    def _check_python_call(self, node: ast.Call, name: str, params: list[dict] | None) -> None:
        self.checked_calls += 1
        if params is None or any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return
        positional = [p for p in params if p.get("kind") in (None, "positional_only")]
        if len(node.args) > len(positional) and not any(p.get("kind") == "var_positional" for p in params):
            self._report(node, "error", f"slicer.util.{name} takes at most {len(positional)} positional arguments, {len(node.args)} given")
        names = {p["name"] for p in params if p.get("kind") != "positional_only"}
        for keyword in node.keywords:
            if keyword.arg not in names and not any(p.get("kind") == "var_keyword" for p in params):
                self._report(node, "error", f"slicer.util.{name} has no parameter {keyword.arg!r}")
        given = {p["name"] for p in positional[: len(node.args)]} | {k.arg for k in node.keywords}
        for param in params:
            if param.get("kind") in (None, "keyword_only") and "default" not in param and param["name"] not in given:
                self._report(node, "error", f"slicer.util.{name} needs {param['name']!r}")
