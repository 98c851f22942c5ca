"""positions.py: where an error is in the text (PostgreSQL's LINE n: style)."""

from pyfuncs.errors import SYNTAX_ERROR, ShiftError
from pyfuncs.shiftql import parse_script
from pyfuncs.shiftql.positions import SYNOPSIS, caret, expected, located, offset_of, syntax_error


def test_caret_points_at_the_column_of_the_right_line_and_keeps_tabs():
    text = "SELECT a\n\tFROM  Models"
    line, col, detail = caret(text, text.index("Models"))
    assert (line, col) == (2, 8)
    assert detail == "line 2, column 8:\n\tFROM  Models\n\t      ^"


def test_caret_clamps_offsets_outside_the_text():
    assert caret("abc", 99)[:2] == (1, 4)
    assert caret("abc", -5)[:2] == (1, 1)


def test_offset_of_a_line_and_column():
    text = "ab\ncdef\ng"
    assert offset_of(text, 2, 3) == (5, 5, False)
    assert offset_of(text, None, None) == (0, 0, False)
    assert offset_of(text, 9, 99)[2] is True  # past the end


def test_syntax_error_near_a_word_or_at_the_end():
    error = syntax_error("SELECT FROM x", 7, 10, False, "Expecting )")
    assert str(error) == 'syntax error at or near "FROM"' and error.sqlstate == SYNTAX_ERROR
    assert error.hint == "expected ); " + SYNOPSIS
    assert str(syntax_error("SELECT", 6, 6, True, "")) == "syntax error at end of input"


def test_expected_rewrites_sqlglot_descriptions():
    assert expected("Found multiple 'LIMIT' clauses") == "LIMIT is written twice"
    assert expected("Required keyword: 'this' missing") == "expected an expression here"
    assert expected(None) == "valid SHiFT-QL"


def test_located_puts_the_caret_under_the_node_once():
    text = "SELECT ModelId\nFROM Models WHERE Nope = 1"
    select = parse_script(text).expressions[0]
    column = select.args["where"].this.this
    error = located(ShiftError("bad", SYNTAX_ERROR), text, column)
    assert error.detail == "line 2, column 19:\nFROM Models WHERE Nope = 1\n                  ^"
    kept = located(ShiftError("bad", SYNTAX_ERROR, detail="given"), text, column)
    assert kept.detail == "given"
