"""The fields of migration.yaml that are checked on their own: names, cron schedules and the limits of the
per-run settings (the DAG params, the trigger form and the console check them the same way). No database."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from airmigrate.engines.base import ONLINE, PT_OSC
from airmigrate.errors import FieldProblem

SPEC_FILE = "migration.yaml"
FOLDER_NAME = re.compile(r"^[0-9]{4}_[a-z0-9_]+$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# Airflow's cron presets (airflow.utils.dates.cron_presets) plus @once; @continuous makes no sense for a migration
CRON_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *",
                "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *"}
CRON_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day of month", "1-31"), ("month", "1-12 or jan-dec"),
               ("day of week", "0-6 or sun-sat"))
CRON_FIX = ("write 5 fields, minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-6, 0 = "
            "Sunday), e.g. \"0 2 * * *\" for 02:00 every day, or a preset: @once, " + ", ".join(CRON_PRESETS))

IDENTIFIER_RULE = ("letters (a-z, A-Z), digits, _ and $ only, starting with a letter or _, at most 63 characters "
                   "(PostgreSQL's limit); lowercase is best, since unquoted SQL folds names to lowercase")
IDENTIFIER_WHY = ("such a name needs no quotes, so migration.yaml, your SQL files and the generated SQL all mean the "
                  "same object; an object whose real name needs quotes must be renamed in the database first")

Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern, description="A plain PostgreSQL identifier")]


def identifier_problem(value: str) -> str | None:
    """Why `value` is not a plain identifier (IDENTIFIER), in words; None when it is one."""
    if IDENTIFIER.match(value):
        return None
    if not value:
        return "is empty"
    bad = [c for c in dict.fromkeys(value) if not re.match(r"[A-Za-z0-9_$]", c)]
    if bad:
        names = {" ": "a space", "\t": "a tab", ".": "a dot", "-": "a hyphen", '"': "a double quote",
                 "'": "a quote", ";": "a semicolon"}
        return "contains " + ", ".join(names.get(c, f"'{c}'") for c in bad)
    if not re.match(r"[A-Za-z_]", value[0]):
        return f"starts with '{value[0]}'"
    return f"is {len(value)} characters long"


def identifier_fix(value: str) -> str:
    suggestion = re.sub(r"[^A-Za-z0-9_$]+", "_", value).strip("_").lower() or "name"
    if not re.match(r"[A-Za-z_]", suggestion[0]):
        suggestion = "_" + suggestion
    return f"use a plain PostgreSQL identifier such as {suggestion[:63]}: {IDENTIFIER_RULE}. Why: {IDENTIFIER_WHY}"


def check_cron(value: str) -> str:
    """`value` as Airflow will read it: a preset or a 5-field cron that croniter (Airflow's cron library) accepts;
    the problem names the field that is out of range."""
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    expression = value.strip()
    if expression.startswith("@"):
        try:  # Airflow's presets, else croniter's own aliases (@midnight, @annually), as Airflow reads them
            if expression != "@once":
                croniter(CRON_PRESETS.get(expression, expression))
        except (CroniterBadCronError, ValueError):
            raise FieldProblem(f"'{value}' is not a preset Airflow knows", CRON_FIX) from None
        return value
    fields = expression.split()
    if len(fields) != 5:
        raise FieldProblem(f"'{value}' has {len(fields)} field(s), not the 5 of a cron expression", CRON_FIX)
    try:
        croniter(expression).get_next()
    except (CroniterBadCronError, CroniterBadDateError, ValueError) as exc:
        for i, ((name, allowed), text) in enumerate(zip(CRON_FIELDS, fields)):
            alone = " ".join(text if j == i else "*" for j in range(5))
            try:
                croniter(alone)
            except (CroniterBadCronError, ValueError):
                raise FieldProblem(f"'{value}': the {name} field '{text}' is not valid (allowed: {allowed})",
                                   CRON_FIX) from None
        if isinstance(exc, CroniterBadDateError):
            raise FieldProblem(f"'{value}' matches no date at all (its day of month never occurs in its month)",
                               CRON_FIX) from None
        raise FieldProblem(f"'{value}' is not a cron expression Airflow can schedule ({exc})", CRON_FIX) from None
    return value


# Limits of the settings a run may override (trigger form, CLI --param, the console): one place, used by the
# spec's fields, the DAG params and every check of a per-run value.
BATCH_SIZE_MAX, SHARDS_MAX, RATIO_MAX = 2_000_000, 64, 100


def setting_problem(name: str, value) -> str | None:
    """Why a per-run value of batch_size, shards or app_latency_ratio cannot apply (None when it can): what
    the trigger form, `--param` and the console refuse with, instead of clamping."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "batch_size" and not (number and value == int(value) and 1 <= value <= BATCH_SIZE_MAX):
        return f"give a whole number of rows from 1 to {BATCH_SIZE_MAX:,}"
    if name == "shards" and not (number and value == int(value) and 1 <= value <= SHARDS_MAX):
        return f"give a whole number of parallel backfill tasks from 1 to {SHARDS_MAX}"
    if name == "app_latency_ratio" and value is not None and not (number and 1 < value <= RATIO_MAX):
        return f"give a ratio above 1 and at most {RATIO_MAX} (e.g. 1.25), or none for full speed"
    return None


# How a change the server can only do by copying the table runs (`executor`); the engine says which it has.
EXECUTORS = {ONLINE: "the server's own online DDL only: a change that would copy the table is refused by the "
                     "preflight, quoting the server",
             PT_OSC: "MySQL / MariaDB: pt-online-schema-change (Debian's percona-toolkit) copies the table online "
                     "for a change the server can only do by copying"}
EXECUTOR_FIX = (f"write `executor: {PT_OSC}` (pt-online-schema-change, for an ALTER MySQL can only do by copying the "
                f"table) or leave `executor` out (`{ONLINE}`, the default: the server's own online DDL)")


def check_executor(value) -> str:
    """`executor` as the engines know it; anything else names both values and what each does."""
    if value in EXECUTORS:
        return value
    close = {"ptosc": PT_OSC, "pt_osc": PT_OSC, "pt-online-schema-change": PT_OSC, "inplace": ONLINE,
             "instant": ONLINE}.get(str(value).strip().lower())
    hint = f" (did you mean `{close}`?)" if close else ""
    raise FieldProblem(f"'{value}' is not an executor{hint}", EXECUTOR_FIX)
