"""Reading a MONAI bundle's config without running it: JSON, or YAML through ``yaml.safe_load``; nothing is
instantiated and nothing is evaluated.

``monai.bundle`` evaluates every ``$`` string as Python and instantiates every ``_target_``: code written by the
model's authors, or by whoever changed the file since. Here a value is read only where the importer asks for it
(``network_def``, ``preprocessing``, ``inferer``, ``postprocessing``), and it may hold only:

- literals (numbers, strings, true/false/null, lists, objects);
- ``@id`` references to other entries of the same config (``@a::b`` or the older ``@a#b``);
- ``%id`` / ``%path::id`` macros: a copy of an entry of this config or of another config file inside the bundle;
- ``$`` expressions made of literals, ``@id`` references, comparisons, ``and``/``or``/``not`` and
  ``A if CONDITION else B`` (the zoo's ``"$[1.5, 1.5, 1.5] if @displayable_configs#highres else [3.0, 3.0, 3.0]"``),
  evaluated by walking their syntax tree, never by ``eval``.

Anything else (a call, an attribute, an import, a name) is refused with the file, the entry and the expression.
Entries the importer does not read (``imports``, ``datalist``, ``device``, ``evaluator``…) are never looked at.
"""
from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError

ID_SEPARATORS = re.compile(r"::|#")
REFERENCE = re.compile(r"@([A-Za-z0-9_]+(?:(?:::|#)[A-Za-z0-9_]+)*)")
PLACEHOLDER = "__ciss_reference_{}"
MACRO_FILE = re.compile(r"^(.+?\.(?:json|yaml|yml))(?:::|#)?(.*)$")  # "%path/to/file.json::id"; without a file: this config
# Keys monai.bundle gives a meaning of its own; _target_ is read by the caller, _disabled_ and _mode_ are checked.
SPECIAL_KEYS = frozenset({"_target_", "_desc_", "_requires_", "_disabled_", "_mode_"})
MAX_DEPTH = 32  # references deeper than this are a cycle or an attack, not a config
MAX_VALUES = 100_000
MAX_CONFIG_BYTES = 8 * 2**20
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
COMPARISONS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
EXPRESSION_HINT = (
    "CISSegmentation reads a MONAI bundle's configs without running them: a value it reads may be a literal, an @reference "
    "or a simple `A if CONDITION else B` (docs/import.md). Replace the expression with its literal value in that file, "
    "or ask the model's authors for a config without code"
)


def _refused(path: Path, where: str, what: str) -> InputError:
    return InputError(f"{path}: {where} is {what}, which the importer does not run", EXPRESSION_HINT)


def load_config_file_or_raise(path: Path) -> Any:
    """A JSON or YAML file as plain data (``yaml.safe_load``: no Python objects, no tags)."""
    if path.suffix not in CONFIG_SUFFIXES:
        raise InputError(f"{path} is not a JSON or YAML config", "MONAI bundle configs end in .json, .yaml or .yml")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(f"{path} is larger than {MAX_CONFIG_BYTES // 2**20} MB", "a bundle config is a few kB; check that this is the right file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {error}", "check that the file exists, is readable and is UTF-8 text") from error
    try:
        if path.suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except ValueError as error:  # json.JSONDecodeError
        raise InputError(f"{path} is not valid JSON: {error}", "the bundle's config is damaged; download the bundle again") from error
    except Exception as error:  # yaml.YAMLError, including tags safe_load refuses (!!python/object…)
        raise InputError(f"{path} is not plain YAML: {error}", "the bundle's config is damaged or holds Python object tags, which are never loaded") from error


def split_id(identifier: str) -> list[str]:
    """``"a::b#c"`` → ``["a", "b", "c"]`` (MONAI's separator ``::``, the older ``#`` too)."""
    return [part for part in ID_SEPARATORS.split(identifier) if part != ""]


class ConfigReader:
    """One config file of a bundle, read on demand: :meth:`value` resolves what the importer asks for."""

    def __init__(self, data: Any, path: Path, bundle_root: Path) -> None:
        if not isinstance(data, dict):
            raise InputError(f"{path} does not hold a JSON object at its top level", "a MONAI bundle config maps names to entries")
        self.data = data
        self.path = path
        self.bundle_root = bundle_root
        self._values_read = 0

    @classmethod
    def open_or_raise(cls, path: Path, bundle_root: Path) -> ConfigReader:
        return cls(load_config_file_or_raise(path), path, bundle_root)

    def has(self, identifier: str) -> bool:
        try:
            self._lookup(identifier, identifier)
        except InputError:
            return False
        return True

    def raw(self, identifier: str) -> Any:
        """The entry at ``identifier`` as written (nothing resolved)."""
        return self._lookup(identifier, identifier)

    def follow(self, node: Any, where: str) -> tuple[str, Any]:
        """An entry that is only an ``@id`` reference or a ``%`` macro, followed to what it names (its arguments
        left unresolved, to be read one by one); any other node as it is. Returns where it was found and it."""
        for _ in range(MAX_DEPTH):
            if isinstance(node, str) and node.startswith("@") and REFERENCE.fullmatch(node):
                where, node = node[1:], self._lookup(node[1:], where)
            elif isinstance(node, str) and node.startswith("%"):
                node = self._macro(node[1:], where)
            else:
                return where, node
        raise InputError(f"{self.path}: {where} refers to itself, or nests references more than {MAX_DEPTH} deep", "fix the references in the config")

    def value(self, node: Any, where: str, _depth: int = 0) -> Any:
        """``node`` (an entry, or a part of one) with every reference, macro and allowed expression resolved."""
        if _depth > MAX_DEPTH:
            raise InputError(f"{self.path}: {where} refers to itself, or nests references more than {MAX_DEPTH} deep", "fix the references in the config")
        self._values_read += 1
        if self._values_read > MAX_VALUES:  # YAML aliases can make a small file expand to billions of values
            raise InputError(f"{self.path}: the entries read expand to more than {MAX_VALUES} values ({where})", "a model's config is a few hundred values; this one is refused")
        if isinstance(node, dict):
            return {key: self.value(item, f"{where}::{key}", _depth + 1) for key, item in node.items()}
        if isinstance(node, list):
            return [self.value(item, f"{where}::{index}", _depth + 1) for index, item in enumerate(node)]
        if not isinstance(node, str):
            return node
        if node.startswith("@") and REFERENCE.fullmatch(node):
            target = node[1:]
            return self.value(self._lookup(target, where), target, _depth + 1)
        if node.startswith("%"):
            return self.value(self._macro(node[1:], where), where, _depth + 1)
        if node.startswith("$"):
            return self._expression(node, where, _depth)
        if node.startswith("@"):
            raise _refused(self.path, where, f"the reference {node!r} (not a plain @id)")
        return node

    def arguments_or_raise(self, entry: dict[str, Any], where: str, *, read: dict[str, Any], ignored: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The arguments of a ``_target_`` entry that the importer uses, resolved, with ``read``'s defaults for the
        missing ones. ``ignored`` arguments (a device, a batch size…) do not change the result and are never read;
        any other argument is refused by name, since its effect would be lost."""
        target = entry.get("_target_")
        unknown = sorted(set(entry) - set(read) - set(ignored) - SPECIAL_KEYS)
        if unknown:
            raise InputError(
                f"{self.path}: {where} ({target}) sets {', '.join(unknown)}, which CISSegmentation cannot reproduce",
                f"the importer reads {', '.join(sorted(read)) or 'no argument'} of {target} (docs/import.md); remove the argument if it does not matter for inference",
            )
        if entry.get("_mode_", "default") != "default":
            raise _refused(self.path, f"{where}::_mode_", f"{entry['_mode_']!r} (only the default mode builds an object)")
        return {name: self.value(entry[name], f"{where}::{name}") if name in entry else default for name, default in read.items()}

    def is_disabled(self, entry: dict[str, Any], where: str) -> bool:
        """MONAI's ``_disabled_``: a disabled entry is skipped, as monai.bundle skips it."""
        return bool(self.value(entry.get("_disabled_", False), f"{where}::_disabled_"))

    def _lookup(self, identifier: str, where: str) -> Any:
        node: Any = self.data
        for part in split_id(identifier):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise InputError(f"{self.path}: {where} refers to {identifier!r}, which the config does not define", "fix the reference, or give the entry a literal value")
        return node

    def _macro(self, text: str, where: str) -> Any:
        """``%id`` or ``%path::id``: a copy of an entry, from this file or another config file inside the bundle."""
        match = MACRO_FILE.match(text)
        if match is None:
            return self._lookup(text, where)
        file_part, identifier = match.group(1), match.group(2)
        other = (self.bundle_root / file_part).resolve()
        if self.bundle_root.resolve() not in other.parents or other.suffix not in CONFIG_SUFFIXES:
            raise _refused(self.path, where, f"the macro %{text!r}, which names a file outside the bundle's configs")
        return ConfigReader(load_config_file_or_raise(other), other, self.bundle_root)._lookup(identifier, where)

    def _expression(self, text: str, where: str, depth: int) -> Any:
        references: list[str] = []

        def placeholder(match: re.Match[str]) -> str:
            references.append(match.group(1))
            return PLACEHOLDER.format(len(references) - 1)

        source = REFERENCE.sub(placeholder, text[1:]).strip()
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            raise _refused(self.path, where, f"the expression {text!r} (not valid Python)") from None
        names = {PLACEHOLDER.format(i): identifier for i, identifier in enumerate(references)}

        def resolve_reference(name: str) -> Any:
            return self.value(self._lookup(names[name], where), names[name], depth + 1)

        def refused(what: str) -> InputError:
            return _refused(self.path, where, f"the expression {text!r} ({what})")

        unread = next((node for node in ast.walk(tree.body) if not _is_allowed(node, names)), None)
        if unread is not None:  # anywhere in the tree, also in a branch the condition would skip
            raise refused(_kind(unread))
        try:
            return _evaluate(tree.body, names, resolve_reference, refused)
        except TypeError:  # e.g. a list compared with a number
            raise refused("values that cannot be compared") from None


def _evaluate(node: ast.AST, names: dict[str, str], reference: Callable[[str], Any], refused: Callable[[str], InputError]) -> Any:
    """Evaluate the allowed subset of Python expressions by walking the tree; anything else is ``refused``.

    ``names`` are the placeholders that stand for the expression's @references, resolved by ``reference``."""

    def evaluate(child: ast.AST) -> Any:
        return _evaluate(child, names, reference, refused)

    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [evaluate(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Name) and node.id in names:
        return reference(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        value = evaluate(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refused("a sign on something other than a number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.IfExp):
        return evaluate(node.body if evaluate(node.test) else node.orelse)
    if isinstance(node, ast.BoolOp):
        values = (evaluate(value) for value in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and all(type(op) in COMPARISONS for op in node.ops):
        left = evaluate(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = evaluate(comparator)
            if not COMPARISONS[type(op)](left, right):
                return False
            left = right
        return True
    raise refused(_kind(node))


# The syntax an expression may use: literals, placeholders of @references, signs, not/and/or, comparisons, A if C else B.
ALLOWED_NODES = (ast.Constant, ast.List, ast.Tuple, ast.Load, ast.UnaryOp, ast.USub, ast.UAdd, ast.Not, ast.IfExp,
                 ast.BoolOp, ast.And, ast.Or, ast.Compare, *COMPARISONS)


def _is_allowed(node: ast.AST, names: dict[str, str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in names
    return isinstance(node, ALLOWED_NODES)


def _kind(node: ast.AST) -> str:
    kinds = {ast.Call: "a call", ast.Attribute: "an attribute access", ast.Name: "a name", ast.Subscript: "a subscript", ast.Lambda: "a lambda"}
    return kinds.get(type(node), f"a {type(node).__name__} expression")


def target_name(entry: Any) -> str | None:
    """The class an entry names: ``"Spacingd"`` for ``"Spacingd"`` or ``"monai.transforms.Spacingd"``; a path
    outside MONAI stays whole (and matches no allow-list); None when the entry names no class."""
    target = entry.get("_target_") if isinstance(entry, dict) else None
    if not isinstance(target, str):
        return None
    return target.rsplit(".", 1)[-1] if target.startswith("monai.") else target
