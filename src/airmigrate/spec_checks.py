"""The checks of a migration folder's files beyond the spec's fields: repeated names, transform.py, the SQL files'
syntax and batch placeholders, the expectations file, and the checksums that detect a changed applied
migration. Each failure is a SpecError naming the file, the field and the fix."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from airmigrate import engines
from airmigrate.errors import SpecError
from airmigrate.spec_fields import SPEC_FILE, identifier_fix, identifier_problem
from airmigrate.sqlfiles import PLACEHOLDER, bound_placeholders  # noqa: F401 (re-exported)
from airmigrate.validation.suites import check_suite_file

if TYPE_CHECKING:  # the models these checks look at (spec.py imports this module)
    from airmigrate.spec import Migration, MigrationSpec

QUALIFIED_NAME = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$"  # add_foreign_key.references_table


def _first_error(errors: list[dict]) -> dict:
    """The error to show: for a field declared as a union (`key`: name or list of names), the branch matching
    the value's type, not "Input should be a valid list" for a name."""
    first = errors[0]
    labels = [i for i, p in enumerate(first["loc"]) if isinstance(p, str) and not re.fullmatch(r"\w+", p)]
    if not labels:
        return first
    union = first["loc"][:labels[0]]
    branches = [e for e in errors if e["loc"][:len(union)] == union]
    return next((e for e in branches if not e["type"].endswith("_type")), first)


def _name_problem(value: str, dotted: bool = False) -> tuple[str, str]:
    """(problem, fix) for a value that is not a plain identifier (or, `dotted`, schema.name)."""
    parts = value.split(".") if dotted and value.count(".") == 1 else [value]
    for part in parts:
        if (problem := identifier_problem(part)) is not None:
            subject = f"'{value}'" if part == value else f"'{part}' in '{value}'"
            return f"{subject} {problem}, so it is not a plain identifier", identifier_fix(part)
    return f"'{value}' is not a plain identifier", identifier_fix(value)


# what each operation changes: columns of the migration's table, other tables, index/constraint names
_COLUMN_FIELDS = {"add_column": ("column",), "rename_column": ("column", "to"), "change_column_type": ("column",),
                  "drop_column": ("column",), "split_table": ("columns",)}
_TABLE_FIELDS = {"split_table": ("new_table",), "drop_table": ("table",)}
_NAME_FIELDS = {"add_index": ("name",), "add_unique": ("name",), "add_check": ("name",), "add_foreign_key": ("name",)}


def _repeated(values: list[str]) -> tuple[int, int] | None:
    """(first index, repeat index) of the first value listed twice."""
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            return seen[value], i
        seen[value] = i
    return None


def _check_no_duplicates(spec_path: Path, spec: MigrationSpec) -> None:
    """A column changed by two operations, an index or constraint name used twice, a key or backfill column
    listed twice: each would half-run (the second statement fails, or silently does nothing, after the first
    one changed the table), so the folder is refused here."""
    for field, values in (("key", spec.key if isinstance(spec.key, list) else []),
                          ("backfill.columns", spec.backfill.columns if spec.backfill else []),
                          ("backfill.reads", spec.backfill.reads if spec.backfill else [])):
        if (pair := _repeated(values)) is not None:
            first, again = pair
            raise SpecError(spec_path, f"{field}[{again}]", f"'{values[again]}' is listed twice "
                            f"({field}[{first}] too)", f"list each column once: [{', '.join(dict.fromkeys(values))}]")
    for kinds, what in ((_COLUMN_FIELDS, "column"), (_TABLE_FIELDS, "table"), (_NAME_FIELDS, "name")):
        owner: dict[str, tuple[int, str]] = {}
        for i, op in enumerate(spec.operations):
            for field in kinds.get(op.op, ()):
                values = getattr(op, field)
                for j, value in enumerate(values if isinstance(values, list) else [values]):
                    where = f"operations[{i}].{field}" + (f"[{j}]" if isinstance(values, list) else "")
                    if value in owner:
                        _refuse_duplicate(spec_path, what, value, where, i, op.op, *owner[value])
                    owner[value] = (i, op.op)


def _refuse_duplicate(spec_path: Path, what: str, value: str, where: str, index: int, op: str, first_index: int,
                      first_op: str) -> None:
    earlier = f"operations[{first_index}] ({first_op})"
    if what == "name":
        raise SpecError(spec_path, where, f"the name '{value}' is already used by {earlier}; PostgreSQL would refuse "
                        "the second one after the first was created", f"give each index and constraint its own "
                        f"name, e.g. {value[:61]}_2")
    if what == "table":
        raise SpecError(spec_path, where, f"table '{value}' is already changed by {earlier}",
                        "change each table in one operation; put a further change in a new migration folder")
    if first_index == index:
        raise SpecError(spec_path, where, f"column '{value}' is named twice in this {op}",
                        "name each column once")
    fix = (f"keep one {op} for '{value}' with its final definition" if op == first_op else
           f"change '{value}' in one operation only; put the {op} in a new migration folder, "
           "run after this one is applied")
    raise SpecError(spec_path, where, f"column '{value}' is already changed by {earlier}; two operations on one "
                    "column in one migration conflict (the second runs against the first one's half-done "
                    "expand)", fix)


def check_transform_file(path: Path, shown: Path | None = None) -> None:
    """transform.py compiles and defines a top-level `def transform(df)` callable with one argument; read with
    `ast`, never imported, so parsing DAGs runs no user code."""
    shown = shown or path
    fix = ("define it at the top level of the file: `def transform(df):` taking the batch as a pandas DataFrame "
           "and returning one with the key and every column in backfill.columns")
    try:
        with warnings.catch_warnings():  # e.g. SyntaxWarning for an invalid escape: the worker will say it
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(), filename=str(shown))
    except SyntaxError as exc:
        raise SpecError(shown, "backfill.transform", f"line {exc.lineno}: Python syntax error: {exc.msg}",
                        "correct the Python syntax (`python -m py_compile` shows the same error)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpecError(shown, "backfill.transform", f"not a Python source file ({exc})",
                        "save it as UTF-8 Python source") from None
    defs = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name == "transform"]
    if not defs:
        nested = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and n.name == "transform"), None)
        others = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        bound = next((n for n in tree.body if "transform" in _bound_names(n)), None)
        problem = "no top-level function `transform`"
        if nested:
            problem += f" (line {nested.lineno} defines one inside a class, function or block)"
        elif bound:
            problem += (f" (line {bound.lineno} binds the name without `def`, which cannot be checked without "
                        "running the file)")
        elif others:
            problem += f"; the file defines {', '.join(others)}"
        raise SpecError(shown, "backfill.transform", problem, fix)
    node = defs[-1]
    if isinstance(node, ast.AsyncFunctionDef):
        raise SpecError(shown, "backfill.transform", f"line {node.lineno}: `transform` is `async def`", fix)
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    required_kw = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    signature = f"def transform({ast.unparse(args)})"
    if not (positional or args.vararg):
        problem = "takes no argument"
    elif required > 1:
        problem = f"needs {required} arguments"
    elif required_kw:
        problem = f"needs the keyword argument(s) {', '.join(required_kw)}"
    else:
        return
    raise SpecError(shown, "backfill.transform", f"line {node.lineno}: `{signature}` {problem}; airmigrate calls "
                    "transform(df) with one DataFrame per batch", "give it exactly one parameter: `def transform(df):`")


def _bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level assignment or import binds."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = node.targets if isinstance(node, ast.Assign) else \
        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
    return {x.id for target in targets for x in ast.walk(target) if isinstance(x, ast.Name)}


def _require_file(folder: Path, name: str, field: str) -> Path:
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents:
        raise SpecError(folder / SPEC_FILE, field, f"'{name}' points outside the migration folder",
                        "name a file inside the folder")
    if not path.is_file():
        raise SpecError(folder / SPEC_FILE, field, f"file '{name}' does not exist",
                        f"create {folder / name} or correct the file name")
    return path


def engine_variant(folder: Path, name: str) -> str:
    """`name`, or its variant for the target's engine when the folder has one: ``up.mysql.sql`` beside ``up.sql``
    is what runs on MySQL / MariaDB (the way Flyway keeps vendor-specific locations), so one migration folder
    serves both engines where their SQL differs (CONCURRENTLY, IS DISTINCT FROM, ALGORITHM=...)."""
    stem, dot, suffix = name.rpartition(".")
    variant = f"{stem}.{engines.current().name}.{suffix}" if dot else None
    return variant if variant and (folder / variant).is_file() else name


def other_engine_variant(path: Path) -> bool:
    """A file like ``up.mysql.sql`` that belongs to an engine other than the target's."""
    parts = path.name.split(".")
    return len(parts) == 3 and parts[1] in engines.REGISTRY and parts[1] != engines.current().name


def _sql_file(folder: Path, named: str | None, field: str, optional: bool) -> str:
    """up/down: the named file, else `<field>.sql` when present; required unless operations generate the SQL."""
    name = engine_variant(folder, named or f"{field}.sql")
    if named is None and optional and not (folder / name).is_file():
        return ""
    return _read_sql(folder, name, field, required=not optional)


def _read_sql(folder: Path, name: str, field: str, required: bool = False) -> str:
    name = engine_variant(folder, name)
    text = _require_file(folder, name, field).read_text()
    if required and not text.strip():
        raise SpecError(folder / name, field, "the SQL file is empty", "write the SQL statements it should run")
    _check_syntax(folder / name, text, field)
    return text




def _check_syntax(path: Path, text: str, field: str) -> None:
    """PostgreSQL's own parser over the file (batch placeholders read as literals), so a typo stops this folder
    here, with its line, instead of failing at run time or in the middle of building every DAG."""
    error = engines.current().syntax_error(bound_placeholders(text))
    if error:
        line, message = error
        raise SpecError(path, field, f"line {line}: {message}",
                        "correct the SQL (`airmigrate lint` lists every finding)")


def _check_backfill_placeholders(path: Path, text: str, key_columns: tuple[str, ...]) -> None:
    if len(key_columns) == 1:
        needed, example = ["%(lo)s", "%(hi)s"], f"WHERE {key_columns[0]} BETWEEN %(lo)s AND %(hi)s"
    else:
        needed = [f"%({b}_{i})s" for b in ("lo", "hi") for i in range(len(key_columns))]
        example = (f"WHERE ({', '.join(key_columns)}) BETWEEN ({', '.join(needed[:len(key_columns)])}) "
                   f"AND ({', '.join(needed[len(key_columns):])})")
    for placeholder in needed:
        if placeholder not in text:
            raise SpecError(path, "backfill.sql", f"no {placeholder} placeholder",
                            f"restrict the UPDATE to one batch: {example}")


def _expectations_file(spec_path: Path, spec: MigrationSpec, migration_id: str,
                       expectations_dir: Path | str | None) -> Path | None:
    if expectations_dir is None:
        return None
    path = Path(expectations_dir) / (spec.expectations or f"{migration_id}.json")
    if spec.expectations and not path.is_file():
        raise SpecError(spec_path, "expectations", f"'{path}' does not exist",
                        "create the suite file or correct the name")
    if path.is_file():
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SpecError(path, f"line {exc.lineno}", f"not valid JSON ({exc.msg})", "fix the JSON syntax") from None
        check_suite_file(path)
        return path
    return None


def file_checksums(migration: "Migration") -> dict[str, str]:
    """sha256 per file (folder-relative names; the suite as `expectations/<name>`): the history keeps them so
    a drift report can say which file changed."""
    files = {str(p.relative_to(migration.folder)): p for p in _migration_files(migration.folder)}
    if migration.expectations_file:
        files[f"expectations/{migration.expectations_file.name}"] = migration.expectations_file
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in sorted(files.items())}


def _migration_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _checksum(folder: Path, expectations_file: Path | None) -> str:
    """sha256 over every file of the migration (and its suite): a changed applied migration is detected."""
    digest = hashlib.sha256()
    files = _migration_files(folder)
    if expectations_file:
        files.append(expectations_file)
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
