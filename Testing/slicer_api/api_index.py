"""Look-ups in ``slicer_api.json``, the static index of the real 3D Slicer Python API (see README.md).

Answers "does this exist, how is it called" for ``slicer.util`` functions, VTK/MRML classes (walking
their inheritance), Qt/CTK widgets and module attributes. ``None`` means "not in the index", which a
checker reports as unknown, never as an error: the index covers the API a scripted module typically
uses, not all of Slicer.
"""
from __future__ import annotations

import json
import unittest
from functools import cached_property
from pathlib import Path
from typing import Any

INDEX_PATH = Path(__file__).with_name("slicer_api.json")
# Qt base-class members that CTK/Slicer widgets also declare in C++: PythonQt exposes them through the
# Qt wrappers (README "PythonQt exposure"), so a cpp-only entry with one of these names is callable.
QT_BASE_MEMBERS = frozenset({"setVisible", "sizeHint", "minimumSizeHint", "event", "eventFilter", "setEnabled", "setToolTip", "show", "hide"})


class SlicerApiIndex:
    """The parsed index with the queries a static checker needs."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def load(cls, path: Path = INDEX_PATH) -> SlicerApiIndex:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    @property
    def slicer_commit(self) -> str:
        return self.data["meta"]["slicer"]["commit"]

    def util_member(self, name: str) -> dict[str, Any] | None:
        """A ``slicer.util`` function, class or constant (``{"params": [...]}`` for callables)."""
        util = self.data["slicer.util"]
        for section in ("functions", "classes"):
            if name in util[section]:
                entry = util[section][name]
                return entry if section == "functions" else {"params": entry.get("init", {}).get("params", []), **entry}
        return {"params": None} if name in util["constants"] else None

    def vtk_class(self, name: str) -> dict[str, Any] | None:
        return self.data["vtk_classes"].get(name)

    def qt_widget(self, name: str) -> dict[str, Any] | None:
        return self.data["qt_widgets"].get(name)

    def find_method(self, class_name: str, method: str) -> dict[str, Any] | None:
        """The method entry in ``class_name`` or its nearest ancestor."""
        entry = self.vtk_class(class_name)
        for owner in entry["inheritance"] if entry else []:
            owner_entry = self.vtk_class(owner)
            if owner_entry and method in owner_entry["methods"]:
                return owner_entry["methods"][method]
        return None

    def has_class_constant(self, class_name: str, name: str) -> bool:
        """Enumerators and static constants (class attributes in Python), inherited ones included."""
        entry = self.vtk_class(class_name)
        for owner in entry["inheritance"] if entry else []:
            owner_entry = self.vtk_class(owner) or {}
            if any(name in enum["values"] for enum in owner_entry.get("enums", [])) or name in owner_entry.get("static_constants", []):
                return True
        return False

    def subclasses_with_method(self, class_name: str, method: str) -> list[str]:
        """Indexed subclasses of ``class_name`` that declare ``method`` (a lower-bound type may be one of them)."""
        return sorted(
            name for name, entry in self.data["vtk_classes"].items()
            if class_name in entry["inheritance"][1:] and method in entry["methods"]
        )

    def qt_member(self, class_name: str, name: str) -> str | None:
        """Kind of ``name`` on a widget: property, signal, slot, invokable, decorator, cpp_only or None."""
        for owner in self._qt_chain(class_name):
            entry = self.qt_widget(owner) or {}
            for kind, key in (("property", "properties"), ("signal", "signals"), ("slot", "public_slots"),
                              ("invokable", "invokable_methods"), ("decorator", "decorator_methods")):
                if name in entry.get(key, {}):
                    return kind
            if name in entry.get("cpp_only_public_methods", []) and name not in QT_BASE_MEMBERS:
                return "cpp_only"
        return "objectName" if name == "name" else None

    def _qt_chain(self, class_name: str) -> list[str]:
        entry = self.qt_widget(class_name)
        return [c for c in entry["inheritance"] if self.qt_widget(c)] if entry else []

    @cached_property
    def module_attributes(self) -> set[str]:
        """``slicer.modules.<name>`` of the built-in modules."""
        modules = self.data["slicer.modules_python_names"]["builtin_modules"].values()
        return {m["python_attribute"].rsplit(".", 1)[-1] for m in modules}

    def module_logic_class(self, attribute: str) -> str | None:
        for module in self.data["slicer.modules_python_names"]["builtin_modules"].values():
            if module["python_attribute"].endswith("." + attribute):
                return module.get("logic_class")
        return None

    @cached_property
    def parameter_node_wrapper_names(self) -> set[str]:
        return set(self.data["slicer.parameterNodeWrapper"]["exported_names"])

    @cached_property
    def parameter_node_wrapper_members(self) -> set[str]:
        return set(self.data["slicer.parameterNodeWrapper"]["parameterNodeWrapper_decorated_class_members"]["members"])

    def scripted_base_members(self, base: str) -> set[str] | None:
        """Methods and attributes a ``ScriptedLoadableModule*`` base gives ``self`` (None: not such a base)."""
        entry = self.data["slicer.ScriptedLoadableModule"]["classes"].get(base)
        if entry is None:
            return None
        members = set(entry.get("methods", {})) | set(entry.get("instance_attributes", {})) | set(entry.get("parent_attributes_set_in_init", []))
        if "unittest.TestCase" in entry.get("bases", []):
            members |= set(dir(unittest.TestCase))
        return members

    def util_class_members(self, name: str) -> set[str] | None:
        """Methods a ``slicer.util`` mix-in such as ``VTKObservationMixin`` gives ``self``."""
        entry = self.data["slicer.util"]["classes"].get(name)
        return None if entry is None else set(entry.get("methods", {})) | set(entry.get("instance_attributes", {}))
