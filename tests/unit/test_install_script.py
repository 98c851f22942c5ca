"""The install script that scripts/build_sql.py builds from sql/, read back as text (no database).

The functions are parsed from the built script itself, not from the builder's
declarations, so that a mistake in the builder's templates shows here.
"""

import ast
import inspect
import re

import build_sql
import pytest

from pyfuncs import api

SCRIPT = build_sql.build()

FUNCTION = re.compile(
    r"^CREATE FUNCTION shift\.(?P<name>\w+)\((?P<arguments>.*?)\)\s*RETURNS (?P<returns>.+?)\n"
    r"LANGUAGE (?P<language>\w+) (?P<volatility>\w+) (?P<settings>[^\n]*)\n"
    r"AS (?P<quote>\$\w*\$)(?P<body>.*?)(?P=quote);\n", re.S | re.M)
WRAPPER_BODY = re.compile(
    r"\nDECLARE st text; msg text; det text; hnt text;\n"
    r"BEGIN\n"
    r"    (?P<statement>RETURN QUERY SELECT \* FROM |PERFORM |RETURN )shift\._py_(?P<name>\w+)\((?P<call>[^)]*)\);\n"
    r"EXCEPTION WHEN OTHERS OR query_canceled THEN\n"
    r"    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, "
    r"det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;\n"
    r"    PERFORM shift._raise\(st, msg, det, hnt\);\n"
    r"END\n$")
LOAD = '    GD.get("shift.version") or plpy.execute("SELECT shift._load()")\n    from pyfuncs import api\n'
SETTINGS = "SECURITY INVOKER SET search_path = pg_catalog, pg_temp"


def functions():
    return {m["name"]: m for m in FUNCTION.finditer(SCRIPT)}


def arguments(text):
    """(name, type, default) per argument, white space folded."""
    return [tuple(re.fullmatch(r"(\w+) (.+?)(?: DEFAULT (.+))?", a).groups())
            for a in build_sql.split_list(text)]


def sql_comment(name):
    m = re.search(r"^COMMENT ON FUNCTION shift\.%s IS\n    '((?:[^']|'')*)';$" % name, SCRIPT, re.M)
    return m and m.group(1).replace("''", "'")


def python_call(body):
    """The pyfuncs.api function a PL/Python body calls and the arguments it passes, as ast nodes."""
    assert body.startswith("\n" + LOAD), body
    tree = ast.parse(body[len(LOAD) + 1:].strip())
    assert len(tree.body) == 1, body
    call = tree.body[0].value
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute), body
    assert isinstance(call.func.value, ast.Name) and call.func.value.id == "api", body
    return call.func.attr, call.args


WRAPPERS = {n: f for n, f in functions().items() if f["language"] == "plpgsql" and WRAPPER_BODY.match(f["body"])}
PYTHON = {n[len("_py_"):]: f for n, f in functions().items() if n.startswith("_py_")}


def test_the_guard_line_comes_first():
    assert SCRIPT.splitlines()[0] == '\\echo Use "CREATE EXTENSION shift CASCADE" to load this file. \\quit'
    assert SCRIPT.count("\\echo") == 1 and SCRIPT.count("\\quit") == 1


def test_building_twice_gives_the_same_bytes(tmp_path):
    build_sql.main(["build_sql.py", str(tmp_path / "a.sql")])
    build_sql.main(["build_sql.py", str(tmp_path / "b.sql")])
    assert (tmp_path / "a.sql").read_bytes() == (tmp_path / "b.sql").read_bytes() == SCRIPT.encode()


def test_every_declaration_became_a_pair():
    declared = {d.name for d in build_sql.declarations()}
    assert len(declared) == len(build_sql.declarations()) == 27
    assert declared == set(PYTHON) == set(WRAPPERS)


def test_wrappers_take_the_declared_arguments_and_defaults():
    for d in build_sql.declarations():
        assert arguments(WRAPPERS[d.name]["arguments"]) == [(a.name, a.type, a.default) for a in d.arguments]
    assert arguments(WRAPPERS["score"]["arguments"])[-2:] == [("top_k", "integer", "NULL"),
                                                             ("descending", "boolean", "false")]


def test_every_python_function_has_its_wrapper_and_every_wrapper_its_python_function():
    assert set(PYTHON) == set(WRAPPERS)
    for name, wrapper in WRAPPERS.items():
        assert WRAPPER_BODY.match(wrapper["body"])["name"] == name


def test_no_function_is_left_out_of_the_parse():
    # at the start of a line: shift.submit's body makes a function too
    assert len(functions()) == len(re.findall(r"^CREATE FUNCTION ", SCRIPT, re.M))
    assert len(set(functions())) == len(functions())


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrapper_matches_its_python_function(name):
    wrapper, python = WRAPPERS[name], PYTHON[name]
    assert arguments(wrapper["arguments"]) == arguments(python["arguments"])
    assert " ".join(wrapper["returns"].split()) == " ".join(python["returns"].split())
    assert wrapper["settings"] == python["settings"] == SETTINGS
    assert python["language"] == "plpython3u"
    body = WRAPPER_BODY.match(wrapper["body"])
    names = [a[0] for a in arguments(wrapper["arguments"])]
    assert build_sql.split_list(body["call"]) == names
    returns = wrapper["returns"].strip()
    expected = ("RETURN QUERY SELECT * FROM " if returns.startswith("TABLE") else
                "PERFORM " if returns == "void" else "RETURN ")
    assert body["statement"] == expected
    assert sql_comment(name), "shift.%s has no COMMENT" % name


@pytest.mark.parametrize("name", sorted(PYTHON))
def test_python_function_calls_an_api_function_that_takes_its_arguments(name):
    python = PYTHON[name]
    function, args = python_call(python["body"])
    names = [a[0] for a in arguments(python["arguments"])]
    assert isinstance(args[0], ast.Name) and args[0].id == "plpy"
    passed = [a.id for a in args[1:] if isinstance(a, ast.Name)]
    assert passed == [n for n in names if n in passed] and set(passed) == set(names), \
        "shift._py_%s passes %s, has arguments %s" % (name, passed, names)
    assert all(isinstance(a, (ast.Name, ast.Constant)) for a in args)
    returns = python["body"].strip().splitlines()[-1].strip().startswith("return ")
    assert returns == (python["returns"].strip() != "void")
    _binds(function, len(args))


def _binds(function, count):
    """api.<function> accepts `count` positional arguments (an entry point made by wrapping a
    function of the registry reports, and is checked against, that function's signature)."""
    assert hasattr(api, function), "pyfuncs.api has no %s" % function
    signature = inspect.signature(getattr(api, function))
    assert not any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()), function
    signature.bind(*range(count))


def test_hand_written_python_bodies_call_api_functions_that_exist():
    for name, f in functions().items():
        if f["language"] == "plpython3u" and name not in PYTHON and name != "_load":
            function, args = python_call(f["body"])
            _binds(function, len(args))


def test_declared_comments_reach_the_script():
    for d in build_sql.declarations():
        assert sql_comment(d.name) == d.comment.replace("''", "'")
    assert sql_comment("register_models") == (
        "register a json array of models (objects with register_model's argument names, or locators); "
        "per entry: pending (a worker will load it), registered, or rejected with the error")


def test_volatility_as_declared():
    assert {n for n, f in WRAPPERS.items() if f["volatility"] != "VOLATILE"} == set()
    assert {n for n, f in PYTHON.items() if f["volatility"] != "VOLATILE"} == {"translate"}
    assert PYTHON["translate"]["volatility"] == "STABLE"


@pytest.mark.parametrize("bad", [
    "CREATE FUNCTION shift.f(a text) RETURNS text VOLATILE\nCOMMENT 'no PYTHON clause';",
    "CREATE FUNCTION shift.f(a text) RETURNS text VOLATILE\nPYTHON api.f\nCOMMENT 'unterminated'",
    "CREATE FUNCTION shift.f(a text) RETURNS text VOLATILE\n-- a comment\nPYTHON api.f\nCOMMENT 'x';",
    "CREATE FUNCTION shift.f(a text) RETURNS text VOLATILE\nPYTHON api.f\nCOMMENT 'x' || 'y';",
])
def test_a_malformed_declaration_is_refused(bad):
    with pytest.raises(ValueError):
        build_sql.read_declarations("-- header\n\n" + bad + "\n")
