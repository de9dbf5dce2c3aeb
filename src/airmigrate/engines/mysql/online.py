"""Online DDL on MySQL / MariaDB: which ALGORITHM and LOCK a statement gets, asked of the server itself.

Why ask the server: whether an ALTER is INSTANT, in place or a full copy depends on the server's version, the
row format, the column's current type and the table's indexes; a rule table written here would be wrong
somewhere. The server answers for free on an empty ``CREATE TABLE probe LIKE t``: the same ALTER with an
explicit ``ALGORITHM=..., LOCK=...`` is refused at once (errors 1845/1846, with the reason) when the server
cannot do it that way, and runs in milliseconds on no rows when it can. We try the ladder cheapest first and
keep the first that works, and the server's refusal of ``LOCK=NONE`` as the reason a copy is needed.

The executor then writes that answer into the statement (``ALGORITHM=INSTANT``, or ``ALGORITHM=INPLACE,
LOCK=NONE``), so the real table gets exactly what the probe saw or a refusal in milliseconds, never a silent
copy under a shared lock. Without a connection (``airmigrate plan`` offline, lint) the answer is a
conservative reading of sqlglot's tree: a type change is assumed to copy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pymysql
from sqlglot import exp
from sqlglot.tokens import TokenType

from airmigrate.engines.mysql import dialect
from airmigrate.engines.mysql.connection import ALTER_NOT_SUPPORTED, code, message, quote_identifier
from airmigrate.engines.mysql.parsing import DIALECT, first_word, parse_one, tokenize
from airmigrate.locks import NO_LOCK, Analysis, RelationLock

NONE, SHARED, EXCLUSIVE = "LOCK=NONE", "LOCK=SHARED", "LOCK=EXCLUSIVE"
LOCK_MODES = [NONE, SHARED, EXCLUSIVE]     # weakest first
WRITE_BLOCKING = {SHARED, EXCLUSIVE}       # SHARED: reads go on, writes wait
ALGORITHMS = ["INSTANT", "NOCOPY", "INPLACE", "COPY"]   # cheapest first
# What the table goes through under each algorithm, in airmigrate.locks' words
EFFECT = {"INSTANT": "", "NOCOPY": "scan", "INPLACE": "rewrite", "COPY": "rewrite"}
LADDER = [("INSTANT", "NONE"), ("NOCOPY", "NONE"), ("INPLACE", "NONE"), ("INPLACE", "SHARED"),
          ("COPY", "SHARED"), ("COPY", "EXCLUSIVE")]


@dataclass(frozen=True)
class Verdict:
    algorithm: str          # INSTANT, NOCOPY, INPLACE, COPY
    lock: str               # NONE, SHARED, EXCLUSIVE ("" when the statement takes no LOCK clause)
    refusal: str = ""       # the server's words refusing LOCK=NONE (why it must copy or lock), when it did
    asked: bool = False     # True: the server's answer on an empty copy; False: the static guess

    @property
    def online(self) -> bool:
        return self.lock in ("NONE", "") and self.algorithm != "COPY"

    def clause(self) -> str:
        return f"ALGORITHM={self.algorithm}" + (f", LOCK={self.lock}" if self.lock else "")


# ---------------------------------------------------------------------------------------------------------------
# the statement's table, and its clauses

def table_span(statement: str) -> tuple[int, int, str | None, str] | None:
    """(start, end, schema, table) of the table an ``ALTER [ONLINE|IGNORE] TABLE`` or a ``CREATE [UNIQUE]
    INDEX ... ON`` names, from the tokens (so opaque statements sqlglot only tokenizes work too)."""
    tokens = tokenize(statement)
    words = [t.text.upper() if t.token_type != TokenType.IDENTIFIER else "" for t in tokens]
    kind = first_word(statement)
    if kind == "ALTER" and "TABLE" in words[:3]:
        at = words.index("TABLE") + 1
    elif kind == "CREATE" and "INDEX" in words[:4] and "ON" in words:
        at = words.index("ON") + 1
    else:
        return None
    if at >= len(tokens):
        return None
    if at + 2 < len(tokens) and tokens[at + 1].token_type == TokenType.DOT:
        return tokens[at].start, tokens[at + 2].end + 1, tokens[at].text, tokens[at + 2].text
    return tokens[at].start, tokens[at].end + 1, None, tokens[at].text


def written(statement: str) -> dict[str, str]:
    """The ALGORITHM= / LOCK= the statement names itself ({"ALGORITHM": "COPY", "LOCK": "SHARED"}); such a
    statement is run as written (the server refuses it in milliseconds when it cannot)."""
    tokens = tokenize(statement)
    return {t.text.upper(): tokens[i + 2].text.upper() for i, t in enumerate(tokens)
            if t.token_type != TokenType.STRING and t.text.upper() in ("ALGORITHM", "LOCK")
            and i + 2 < len(tokens) and tokens[i + 1].text == "="}


def has_clause(statement: str) -> bool:
    return bool(written(statement))


def with_clause(statement: str, verdict: Verdict) -> str:
    """The statement with the verdict written in: ``, ALGORITHM=..`` for ALTER TABLE, `` ALGORITHM=..`` (no
    comma) for CREATE INDEX; what the statement names itself is not written twice."""
    own = written(statement)
    parts = [f"{key}={value}" for key, value in (("ALGORITHM", verdict.algorithm), ("LOCK", verdict.lock))
             if value and key not in own]
    if not parts:
        return statement
    if first_word(statement) == "CREATE":
        return f"{statement} {' '.join(parts)}"
    return f"{statement}, {', '.join(parts)}"


def renames_table(statement: str) -> bool:
    """ALTER TABLE ... RENAME TO|AS: never run on a probe (it would create a real table of that name)."""
    tree = parse_one(statement)
    if isinstance(tree, exp.Alter):
        return any(isinstance(a, exp.AlterRename) for a in tree.args.get("actions") or ())
    words = [t.text.upper() for t in tokenize(statement)]
    return any(w == "RENAME" and (i + 1 < len(words) and words[i + 1] not in ("COLUMN", "INDEX", "KEY"))
               for i, w in enumerate(words))


# ---------------------------------------------------------------------------------------------------------------
# asking the server

def probe(conn, statement: str) -> tuple[Verdict | None, str]:
    """The server's verdict on `statement` from an empty ``CREATE TABLE probe LIKE t`` (dropped after), or
    (None, why not). Not written to the binary log where the user may say so (``sql_log_bin``), so replicas
    never see the probe. The session's ``lock_wait_timeout`` is kept short for it: the probe must not queue
    behind someone else's long metadata lock."""
    mysql8 = dialect.flavor(conn) == dialect.MYSQL8
    if mysql8:  # MySQL 8's ALTER has no IF [NOT] EXISTS: the executor asks information_schema instead (.dialect)
        statement = without_if_exists(statement)
    span = table_span(statement)
    if span is None or renames_table(statement):
        return None, "not an ALTER TABLE or CREATE INDEX the server can try on a copy"
    start, end, schema, table = span
    cur = conn.cursor()
    if schema is None:
        cur.execute("SELECT DATABASE()")
        schema = cur.fetchone()[0]
    name = f"_am_probe_{uuid.uuid4().hex[:12]}"
    probe_ref = f"{quote_identifier(schema)}.{quote_identifier(name)}"
    source = f"{quote_identifier(schema)}.{quote_identifier(_unquoted(table))}"
    on_probe = statement[:start] + probe_ref + statement[end:]
    cur.execute("SELECT @@SESSION.lock_wait_timeout")
    saved = cur.fetchone()[0]
    try:
        cur.execute("SET SESSION lock_wait_timeout = 5")
        try:
            cur.execute("SET SESSION sql_log_bin = 0")
        except pymysql.err.MySQLError:
            pass  # no privilege: the probe's CREATE/ALTER/DROP reach replicas, harmless but visible
        try:
            cur.execute(f"CREATE TABLE {probe_ref} LIKE {source}")
        except pymysql.err.MySQLError as exc:
            return None, f"cannot copy {schema}.{_unquoted(table)} for a probe: {message(exc)}"
        refusal, own = "", written(statement)
        for algorithm, lock in LADDER:
            if algorithm == "NOCOPY" and mysql8:
                continue  # MySQL has no NOCOPY (its ALGORITHM is DEFAULT, INSTANT, INPLACE or COPY)
            if own.get("ALGORITHM", algorithm) != algorithm or own.get("LOCK", lock) != lock:
                continue  # what the statement names itself is what it gets
            verdict = Verdict(algorithm, lock, refusal, asked=True)
            try:
                cur.execute(with_clause(on_probe, verdict))
                return verdict, ""
            except pymysql.err.MySQLError as exc:
                if code(exc) not in ALTER_NOT_SUPPORTED:
                    return None, f"the server refused it on an empty copy: {message(exc)}"
                if own:
                    return None, f"the server refuses the ALGORITHM/LOCK it names: {exc.args[1]}"
                if lock == "NONE" and (not refusal or algorithm != "INSTANT"):
                    refusal = str(exc.args[1])
        return None, f"no algorithm worked on an empty copy: {refusal}"
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {probe_ref}")
        cur.execute(f"SET SESSION lock_wait_timeout = {int(saved)}")


def _unquoted(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") and name.endswith("`") else name


# ---------------------------------------------------------------------------------------------------------------
# without a server: a conservative reading of the tree

def guess(statement: str) -> Verdict:
    """What the server would most likely answer (MariaDB 10.11 / MySQL 8.0.29+), erring towards a copy."""
    tree = parse_one(statement)
    if not isinstance(tree, exp.Alter):  # sqlglot refuses MariaDB's ADD INDEX IF NOT EXISTS, RENAME INDEX IF EXISTS
        tree = parse_one(without_if_exists(statement)) or tree
    if first_word(statement) == "CREATE":
        return Verdict("NOCOPY", "NONE")
    if not isinstance(tree, exp.Alter):
        return Verdict("COPY", "SHARED")
    worst = Verdict("INSTANT", "NONE")
    for action in tree.args.get("actions") or ():
        verdict = _guess_action(action)
        if ALGORITHMS.index(verdict.algorithm) > ALGORITHMS.index(worst.algorithm) or \
                LOCK_MODES.index(f"LOCK={verdict.lock or 'EXCLUSIVE'}") > LOCK_MODES.index(f"LOCK={worst.lock}"):
            worst = verdict
    return worst


def without_if_exists(statement: str) -> str:
    """The statement without its ``IF [NOT] EXISTS`` clauses (MariaDB's, which sqlglot cannot read): the algorithm
    a change needs does not depend on them."""
    tokens, cut = tokenize(statement), []
    for i, token in enumerate(tokens):
        if token.token_type == TokenType.STRING or token.text.upper() != "IF":
            continue
        words = [t.text.upper() for t in tokens[i + 1:i + 3]]
        last = i + 2 if words[:2] == ["NOT", "EXISTS"] else i + 1 if words[:1] == ["EXISTS"] else None
        if last is not None:
            cut.append((token.start, tokens[last].end + 1))
    for start, end in reversed(cut):
        statement = statement[:start] + statement[end:]
    return statement


def _guess_action(action: exp.Expression) -> Verdict:
    if isinstance(action, exp.AlterRename):
        return Verdict("INSTANT", "")
    if isinstance(action, (exp.RenameColumn, exp.RenameIndex)):
        return Verdict("INSTANT", "NONE")
    if isinstance(action, exp.ColumnDef):  # ADD COLUMN: instant unless it needs a value computed per row
        generated = action.find(exp.ComputedColumnConstraint, exp.GeneratedAsIdentityColumnConstraint)
        return Verdict("COPY", "SHARED") if generated else Verdict("INSTANT", "NONE")
    if isinstance(action, exp.AlterColumn):
        return Verdict("INSTANT", "NONE") if action.args.get("default") is not None or \
            action.args.get("drop") else Verdict("COPY", "SHARED")
    if isinstance(action, exp.Drop):
        return Verdict("INSTANT", "NONE") if (action.args.get("kind") or "").upper() == "COLUMN" else \
            Verdict("NOCOPY", "NONE")
    if isinstance(action, exp.AddConstraint):
        if action.find(exp.CheckColumnConstraint, exp.Check, exp.ForeignKey, exp.Reference):
            return Verdict("COPY", "SHARED")  # CHECK copies; a FK is in place only with foreign_key_checks=0
        return Verdict("NOCOPY", "NONE")
    return Verdict("COPY", "SHARED")          # MODIFY / CHANGE and the rest: a type change copies


# ---------------------------------------------------------------------------------------------------------------
# analyze: the engine's answer to the plan

def analyze(statement: str, conn=None) -> Analysis:
    """The lock the table is under while the statement runs, and whether it is scanned or rebuilt."""
    kind = first_word(statement)
    inner = _set_statement_for(statement)
    if inner is not None:  # SET STATEMENT var = value FOR <statement>: the statement's locks
        return analyze(inner, conn)
    if kind == "BEGIN":
        return _block(statement)
    if kind in ("ALTER", "CREATE") and table_span(statement):
        return _ddl(statement, conn)
    tree = parse_one(statement)
    relation = _table_name(tree.find(exp.Table)) if tree is not None and tree.find(exp.Table) else ""
    if kind in ("UPDATE", "DELETE", "INSERT", "REPLACE"):
        scans = kind != "INSERT" and tree is not None and tree.args.get("where") is None
        return Analysis((RelationLock(relation, NONE, "rows it changes, in"),), "scan" if scans else "",
                        ("row locks on the rows it changes; the table stays open to other rows",))
    if kind == "CREATE" and isinstance(tree, exp.Create) and (tree.args.get("kind") or "").upper() == "TABLE":
        return Analysis((), "", (NO_LOCK,))
    if kind in ("DROP", "RENAME"):
        return Analysis((RelationLock(relation, EXCLUSIVE),), "", ("an exclusive metadata lock, for a moment",))
    if kind == "TRUNCATE":
        return Analysis((RelationLock(relation, EXCLUSIVE),), "rewrite")
    if kind in ("SELECT", "WITH", "SET", "DO"):
        return Analysis((), "", (NO_LOCK,))
    return Analysis((RelationLock(relation, EXCLUSIVE, "every table it touches"),), "",
                    ("unknown statement: assumed LOCK=EXCLUSIVE",))


def _table_name(table: exp.Table) -> str:
    """The table as [db.]name, without the alias or the joins sqlglot hangs on it (UPDATE t AS a JOIN s ...)."""
    db = table.args.get("db")
    return exp.Table(this=table.this.copy(), db=db.copy() if db else None).sql(DIALECT)


def _set_statement_for(statement: str) -> str | None:
    """The statement MariaDB's ``SET STATEMENT ... FOR <statement>`` runs, None for any other statement."""
    tokens = tokenize(statement)
    if len(tokens) < 2 or tokens[0].text.upper() != "SET" or tokens[1].text.upper() != "STATEMENT":
        return None
    at = next((t for t in tokens if t.text.upper() == "FOR" and t.token_type != TokenType.STRING), None)
    return statement[at.end + 1:].strip() if at else None


def _block(statement: str) -> Analysis:
    """An anonymous block (``BEGIN NOT ATOMIC ... END``): a moment's exclusive metadata lock when it renames,
    creates or drops something, else consistent reads only (a foreign key's orphan scan)."""
    words = {t.text.upper() for t in tokenize(statement) if t.token_type != TokenType.STRING}
    if words & {"RENAME", "DROP", "CREATE", "ALTER"}:
        return Analysis((RelationLock("", EXCLUSIVE, "tables it renames, creates or drops"),), "",
                        ("an anonymous block: an exclusive metadata lock, for a moment",))
    return Analysis((), "scan", (NO_LOCK, "an anonymous block reading in batches (consistent reads)"))


def _ddl(statement: str, conn) -> Analysis:
    start, end, schema, table = table_span(statement)
    relation = statement[start:end]
    verdict, why = (probe(conn, statement) if conn is not None else (None, "no connection: a static guess"))
    own = written(statement)
    verdict = verdict or guess(statement)
    if own and not verdict.asked:  # as written, whatever the guess: the server refuses what it cannot do
        verdict = Verdict(own.get("ALGORITHM", verdict.algorithm), own.get("LOCK", verdict.lock))
    effect = EFFECT[verdict.algorithm]
    if verdict.algorithm == "NOCOPY" and dialect.flavor(conn) == dialect.MYSQL8:  # MySQL's INPLACE without a rebuild
        verdict = Verdict("INPLACE", verdict.lock, verdict.refusal, verdict.asked)
    lock = f"LOCK={verdict.lock}" if verdict.lock else EXCLUSIVE
    notes = [f"ALGORITHM={verdict.algorithm}" + (" (the server's answer on an empty copy)" if verdict.asked
                                                 else f" ({why})")]
    if verdict.refusal:
        notes.append(f"the server refuses LOCK=NONE: {verdict.refusal}" if not verdict.online else
                     f"nothing cheaper: {verdict.refusal}")
    if verdict.algorithm == "COPY":
        notes.append("a copy blocks writes for its whole duration: pt-online-schema-change does it online")
    return Analysis((RelationLock(relation, lock),), effect, tuple(notes))

