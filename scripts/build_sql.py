"""Build the extension's install script from the parts under sql/.

    python3 scripts/build_sql.py [OUTPUT]     (default: build/shift--<default_version>.sql)

The script is the guard line, a header, then PARTS in that order. The parts are
plain SQL but for sql/python_functions.sql, whose declarations become two
functions each (see that file's header): shift._py_<name> in PL/Python and
shift.<name>, the PL/pgSQL wrapper users call.

Why the wrappers: PL/Python reports an uncaught Python exception, plpy.error()
included (it raises plpy.Error), with the exception's type before its text:
"plpy.Error: unknown model ...". In PostgreSQL 15, PLy_traceback() in
src/pl/plpython/plpy_elog.c writes "<module>.<type>: <text>" unconditionally; no
setting or plpy call leaves the prefix out, and only C code (an emit_log_hook)
could rewrite the message. PL/pgSQL's RAISE sets the message alone, so each
wrapper catches the error and re-raises it through shift._raise, keeping its
SQLSTATE, detail and hint.

Python standard library only: `make install` runs it with the system python3.
"""

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "sql"
CONTROL = ROOT / "extension" / "shift.control"
GUARD = '\\echo Use "CREATE EXTENSION shift CASCADE" to load this file. \\quit'
DECLARATIONS = "python_functions.sql"
PARTS = ("tables.sql", "views.sql", "functions.sql", DECLARATIONS, "privileges.sql")

SETTINGS = "SECURITY INVOKER SET search_path = pg_catalog, pg_temp"
VOLATILITY = r"VOLATILE|STABLE|IMMUTABLE"
DECLARATION = re.compile(
    r"CREATE FUNCTION shift\.(?P<name>\w+)\((?P<arguments>.*?)\)\s*"
    r"RETURNS\s+(?P<returns>.+?)\s+(?P<volatility>%s)\s+"
    r"PYTHON\s+(?:(?P<python_volatility>%s)\s+)?api\.(?P<function>\w+)(?:\((?P<call>.*?)\))?\s+"
    r"COMMENT\s+(?P<comment>'.*');$" % (VOLATILITY, VOLATILITY), re.S)
LITERAL = re.compile(r"'((?:[^']|'')*)'")


@dataclass(frozen=True)
class Argument:
    name: str
    type: str
    default: str | None

    def sql(self):
        return "%s %s" % (self.name, self.type) + (" DEFAULT %s" % self.default if self.default else "")


@dataclass(frozen=True)
class Declaration:
    name: str
    arguments: tuple[Argument, ...]
    returns: str
    volatility: str
    python_volatility: str
    function: str
    call: tuple[str, ...]     # api.<function>'s arguments after plpy, as Python source
    comment: str              # the COMMENT's text, quotes doubled as in an SQL literal


def default_version():
    return re.search(r"^default_version\s*=\s*'([^']+)'", CONTROL.read_text(), re.M).group(1)


def split_list(text):
    """Split a comma-separated list at the commas outside quotes and brackets."""
    items, depth, quote, start = [], 0, None, 0
    for i, c in enumerate(text):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [" ".join(item.split()) for item in items if item.strip()]


def parse_argument(text):
    name, rest = text.split(None, 1)
    type_, _, default = rest.partition(" DEFAULT ")
    return Argument(name, type_, default or None)


def parse_declaration(statement):
    m = DECLARATION.fullmatch(statement.strip())
    if not m:
        raise ValueError("not a declaration of the form in %s's header:\n%s" % (DECLARATIONS, statement))
    arguments = tuple(parse_argument(a) for a in split_list(m["arguments"]))
    call = split_list(m["call"]) if m["call"] is not None else [a.name for a in arguments]
    literals = LITERAL.findall(m["comment"])
    if LITERAL.sub("", m["comment"]).strip():
        raise ValueError("COMMENT of shift.%s is not a string literal or adjacent ones" % m["name"])
    return Declaration(m["name"], arguments, " ".join(m["returns"].split()), m["volatility"],
                       m["python_volatility"] or m["volatility"], m["function"], tuple(call), "".join(literals))


def read_declarations(text):
    """The declarations and the comment lines between them, in order: Declaration or str items.

    The file's first block of comment lines, which describes the format, is left out, and
    the blank lines after it; comment lines inside a declaration are not allowed."""
    lines = text.splitlines()
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    while lines and not lines[0].strip():
        lines.pop(0)
    items, statement = [], []
    for line in lines:
        if statement and line.lstrip().startswith("--"):
            raise ValueError("a comment inside a declaration: %r" % line)
        if statement or (line.strip() and not line.startswith("--")):
            statement.append(line)
            if line.rstrip().endswith(";"):
                items.append(parse_declaration("\n".join(statement)))
                statement = []
        else:
            items.append(line)
    if statement:
        raise ValueError("a declaration without its closing semicolon:\n%s" % "\n".join(statement))
    return items


def declarations():
    return [d for d in read_declarations((SQL_DIR / DECLARATIONS).read_text()) if isinstance(d, Declaration)]


def create_function(name, arguments, returns, language, volatility):
    """CREATE FUNCTION up to AS: the arguments on the first line where it fits in 100 characters."""
    first = "CREATE FUNCTION shift.%s(%s) RETURNS %s" % (name, ", ".join(a.sql() for a in arguments), returns)
    if len(first) > 100:
        first = "CREATE FUNCTION shift.%s(\n%s\n) RETURNS %s" % (
            name, ",\n".join("    " + a.sql() for a in arguments), returns)
    return "%s\nLANGUAGE %s %s %s\n" % (first, language, volatility, SETTINGS)


def python_function(d):
    call = "api.%s(%s)" % (d.function, ", ".join(("plpy",) + d.call))
    return (create_function("_py_" + d.name, d.arguments, d.returns, "plpython3u", d.python_volatility)
            + "AS $python$\n"
            + '    GD.get("shift.version") or plpy.execute("SELECT shift._load()")\n'
            + "    from pyfuncs import api\n"
            + "    %s%s\n" % ("" if d.returns == "void" else "return ", call)
            + "$python$;\n")


def wrapper(d):
    call = "shift._py_%s(%s)" % (d.name, ", ".join(a.name for a in d.arguments))
    if d.returns.startswith("TABLE"):
        statement = "RETURN QUERY SELECT * FROM " + call
    elif d.returns == "void":
        statement = "PERFORM " + call
    else:
        statement = "RETURN " + call
    return (create_function(d.name, d.arguments, d.returns, "plpgsql", d.volatility)
            + "AS $$\n"
            + "DECLARE st text; msg text; det text; hnt text;\n"
            + "BEGIN\n"
            + "    %s;\n" % statement
            # OTHERS leaves out query_canceled: a cancel or statement_timeout would keep the prefix
            + "EXCEPTION WHEN OTHERS OR query_canceled THEN\n"
            + "    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, "
              "det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;\n"
            + "    PERFORM shift._raise(st, msg, det, hnt);\n"
            + "END\n"
            + "$$;\n"
            + "COMMENT ON FUNCTION shift.%s IS\n    '%s';\n" % (d.name, d.comment))


GENERATED = """\
-------------------------------------------------------------------------------
-- The functions that call Python, generated from sql/%s. Per
-- function: shift._py_<name>, in PL/Python, makes sure shift._load() has put
-- pyfuncs on the path, then calls one pyfuncs.api function; shift.<name>, the
-- PL/pgSQL wrapper users call, re-raises its errors without PL/Python's
-- "plpy.Error: " prefix.
-------------------------------------------------------------------------------

""" % DECLARATIONS


def generate(text):
    out = [GENERATED]
    for item in read_declarations(text):
        out.append(python_function(item) + "\n" + wrapper(item) if isinstance(item, Declaration) else item + "\n")
    return "".join(out)


def build():
    """The install script's text."""
    version = default_version()
    out = [GUARD + "\n",
           "-- shift %s: a model search engine for transfer learning, inside PostgreSQL.\n" % version,
           "-- Built by scripts/build_sql.py from the parts under sql/: edit those, not this file.\n"]
    for part in PARTS:
        text = (SQL_DIR / part).read_text()
        out.append("\n" + (generate(text) if part == DECLARATIONS else text))
    return "".join(out)


def main(argv):
    output = Path(argv[1]) if len(argv) > 1 else ROOT / "build" / ("shift--%s.sql" % default_version())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(build())
    print("build_sql: %s" % output)


if __name__ == "__main__":
    main(sys.argv)
