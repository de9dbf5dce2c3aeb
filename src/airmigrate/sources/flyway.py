"""A Flyway project read as Flyway reads it: no database, no Airflow (the dag-processor parses this).

- Scripts: ``V<version>__<description>.sql`` (versioned, in version order), ``R__<description>.sql``
  (repeatable, after the versioned ones, by description, applied again when their checksum changed) and
  ``U<version>__<description>.sql`` (the undo of that version: our rollback).
- The checksum is Flyway's (``ChecksumCalculator``): CRC32 over the UTF-8 bytes of each line without its
  line ending (so CRLF and LF files agree), a byte-order mark dropped from the first line, as a signed
  32-bit integer. It is taken over the file as written, before placeholders are replaced.
- Placeholders ``${name}`` come from the config file (``flyway.conf``: ``flyway.placeholders.name=value``;
  ``flyway.toml``: ``[flyway.placeholders]``) and ``FLYWAY_PLACEHOLDERS_NAME`` in the environment, as Flyway
  takes them; a placeholder with no value is an error naming the script, like Flyway's.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import zlib
from dataclasses import dataclass, field
from functools import total_ordering
from pathlib import Path

from airmigrate.errors import SpecError

CONFIG_NAMES = ("flyway.conf", "flyway.toml", "conf/flyway.conf", "conf/flyway.toml")
SCRIPT = re.compile(r"^(?P<prefix>[VUR])(?P<version>[^_]*(?:_(?!_)[^_]*)*)__(?P<description>.+)\.sql$", re.I)
BASELINE_DESCRIPTION = "<< Flyway Baseline >>"
SCHEMA_DESCRIPTION = "<< Flyway Schema Creation >>"


def checksum(data: bytes | str) -> int:
    """Flyway's checksum of a script: CRC32 of its lines without line endings (BOM stripped), signed int32."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":  # Java's readLine() gives no empty line after a final line ending
        lines.pop()
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    crc = 0
    for line in lines:
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= 1 << 31 else crc


@total_ordering
@dataclass(frozen=True)
class Version:
    """Flyway's MigrationVersion: parts compared as numbers, `1.1` == `1_1`, trailing zeros do not count."""

    text: str

    @property
    def parts(self) -> tuple[int, ...]:
        parts = [int(p) for p in self.text.split(".")]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        return tuple(parts)

    def __eq__(self, other) -> bool:
        return isinstance(other, Version) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __lt__(self, other: "Version") -> bool:
        return self.parts < other.parts

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Script:
    """One Flyway script as found on disk."""

    kind: str  # "V", "R" or "U"
    version: Version | None
    description: str  # as Flyway stores it: underscores become spaces
    path: Path
    name: str  # the `script` column: the path relative to the location
    checksum: int

    @property
    def slug(self) -> str:
        words = re.sub(r"[^a-z0-9]+", "_", self.description.lower()).strip("_")
        head = f"v{self.version.text.replace('.', '_')}" if self.version else "r"
        return f"{head}_{words}"[:60].rstrip("_")


@dataclass(frozen=True)
class Project:
    """The project: its scripts in Flyway's order, their undo scripts, and the settings airmigrate uses."""

    root: Path
    config_file: Path | None
    versioned: tuple[Script, ...]
    repeatable: tuple[Script, ...]
    undo: dict[Version, Script]
    placeholders: dict[str, str]
    table: str = "flyway_schema_history"
    schema: str = "public"
    installed_by: str | None = None
    prefix: str = "${"
    suffix: str = "}"
    locations: tuple[Path, ...] = field(default_factory=tuple)
    replace: bool = True  # flyway.placeholderReplacement
    schemas: tuple[str, ...] = ()  # the schemas Flyway manages: defaultSchema first, then flyway.schemas
    create_schemas: bool = True  # flyway.createSchemas

    def substitute(self, script: Script, text: str) -> str:
        """The script with its placeholders replaced, as Flyway runs it; a missing value names the script."""
        if not self.replace:
            return text
        pattern = re.compile(re.escape(self.prefix) + r"([A-Za-z0-9_:.\-]+)" + re.escape(self.suffix))
        builtins = {"flyway:defaultSchema": self.schema, "flyway:table": self.table,
                    "flyway:filename": script.path.name}

        def value(match: re.Match) -> str:
            name = match.group(1)
            if name in self.placeholders:
                return self.placeholders[name]
            if name in builtins:
                return builtins[name]
            raise SpecError(script.path, f"placeholder {match.group(0)}", "has no value",
                            f"set flyway.placeholders.{name}=<value> in {self.config_file or 'flyway.conf'} (or "
                            f"FLYWAY_PLACEHOLDERS_{name.upper()} in the environment), as Flyway needs it too")

        return pattern.sub(value, text)


def load_project(location: Path | str, config: Path | str | None = None) -> Project:
    """Read a Flyway project: DIR is the folder of the scripts or of the config file (flyway.conf / .toml)."""
    root = Path(location)
    if not root.is_dir():
        raise SpecError(root, "(folder)", "is not a folder", "name the Flyway project's folder (where flyway.conf or "
                                                              "the V1__*.sql scripts are)")
    config_file = Path(config) if config else next((root / n for n in CONFIG_NAMES if (root / n).is_file()), None)
    settings = read_config(config_file) if config_file else {}
    placeholders = {k.removeprefix("placeholders."): v for k, v in settings.items() if k.startswith("placeholders.")}
    for name, value in os.environ.items():  # Flyway reads these too, over the file's
        if name.startswith("FLYWAY_PLACEHOLDERS_"):
            placeholders[name.removeprefix("FLYWAY_PLACEHOLDERS_").lower()] = value
    base = config_file.parent if config_file else root
    locations = _locations(settings.get("locations"), base, root, config_file)
    scripts = _scripts(locations)
    versioned = sorted((s for s in scripts if s.kind == "V"), key=lambda s: s.version)
    _no_duplicates(versioned)
    undo = {s.version: s for s in scripts if s.kind == "U"}
    schemas = [s.strip() for s in settings.get("schemas", "").split(",") if s.strip()]
    default = settings.get("defaultSchema")
    managed = ([default] if default and default not in schemas else []) + schemas  # Flyway: defaultSchema first
    project = Project(root=root, config_file=config_file, versioned=tuple(versioned),
                      repeatable=tuple(sorted((s for s in scripts if s.kind == "R"), key=lambda s: s.description)),
                      undo=undo, placeholders=placeholders, table=settings.get("table", "flyway_schema_history"),
                      schema=settings.get("defaultSchema") or (schemas[0] if schemas else "public"),
                      installed_by=settings.get("installedBy"), prefix=settings.get("placeholderPrefix", "${"),
                      suffix=settings.get("placeholderSuffix", "}"), locations=tuple(locations),
                      replace=settings.get("placeholderReplacement", "true").lower() != "false",
                      schemas=tuple(managed), create_schemas=settings.get("createSchemas", "true").lower() != "false")
    # Flyway's SqlMigrationResolver: a repeatable script's checksum is taken after placeholder replacement (a new
    # placeholder value runs it again); a versioned one's over the file as written
    repeatable = tuple(dataclasses.replace(s, checksum=checksum(project.substitute(s, s.path.read_bytes().decode(
        "utf-8")))) for s in project.repeatable) if project.replace else project.repeatable
    return dataclasses.replace(project, repeatable=repeatable)


def read_config(path: Path) -> dict[str, str]:
    """flyway.conf (Java properties, `flyway.` keys) or flyway.toml (`[flyway]`), keys without `flyway.`."""
    if not path.is_file():
        raise SpecError(path, "(file)", "missing", "give the Flyway config file (flyway.conf or flyway.toml)")
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(path, "(toml)", f"not valid TOML ({exc})", "fix the file's syntax") from None
        flyway = data.get("flyway", {})
        out = {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in flyway.items() if not isinstance(v, dict)}
        out.update({f"placeholders.{k}": str(v) for k, v in (flyway.get("placeholders") or {}).items()})
        return out
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        match = re.match(r"^([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if not match or not match[1].startswith("flyway."):
            raise SpecError(path, f"line {number}", f"'{line}' is not a flyway.<setting>=<value> line",
                            "write one `flyway.<setting>=<value>` per line (# starts a comment)")
        out[match[1].removeprefix("flyway.")] = match[2]
    return out


def _locations(value: str | None, base: Path, root: Path, config_file: Path | None) -> list[Path]:
    if not value:
        return [root]
    found = []
    for item in (v.strip() for v in value.split(",") if v.strip()):
        kind, _, where = item.partition(":") if ":" in item else ("filesystem", "", item)
        if kind != "filesystem":
            raise SpecError(config_file or root, "flyway.locations", f"'{item}' is not a filesystem: location",
                            "airmigrate reads scripts from folders: use filesystem:<folder>")
        path = (base / where) if not Path(where).is_absolute() else Path(where)
        if not path.is_dir():
            raise SpecError(config_file or root, "flyway.locations", f"{path} is not a folder",
                            "correct the location (relative to the config file's folder)")
        found.append(path)
    return found


def _scripts(locations: list[Path]) -> list[Script]:
    scripts = []
    for location in locations:
        for path in sorted(p for p in location.rglob("*.sql") if p.is_file()):
            match = SCRIPT.match(path.name)
            if not match:
                continue  # Flyway ignores files that are not migrations too (callbacks, notes)
            kind = match["prefix"].upper()
            version = None
            if kind != "R":
                text = match["version"].replace("_", ".")
                if not re.fullmatch(r"\d+(\.\d+)*", text):
                    raise SpecError(path, "version", f"'{match['version']}' is not a Flyway version",
                                    "name it V<digits separated by . or _>__<description>.sql, e.g. V1_1__add_email.sql")
                version = Version(text)
            elif match["version"]:
                raise SpecError(path, "file name", "a repeatable script has no version",
                                "name it R__<description>.sql")
            scripts.append(Script(kind, version, match["description"].replace("_", " "), path,
                                  path.relative_to(location).as_posix(), checksum(path.read_bytes())))
    return scripts


def _no_duplicates(versioned: list[Script]) -> None:
    for before, after in zip(versioned, versioned[1:]):
        if before.version == after.version:
            raise SpecError(after.path, "version", f"version {after.version} is also {before.path.name}",
                            "give each versioned script its own version (Flyway refuses this too)")
