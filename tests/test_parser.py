"""The text form of the DSL: round trips, precedence, errors, safety and fuzzing.

* Round trip: for random well-formed expressions ``e`` (from
  :mod:`stochgrad.testing.strategies`), ``parse(str(e)) == e`` with equal
  hashes, and canonical text prints back unchanged.
* Precedence and associativity, numbers, keyword vs positional arguments,
  comments and newlines, written out by hand.
* The embedded Python form builds exactly the IR of the text form.
* Every error message of the parser is asserted with its line, column and
  caret, including nesting beyond ``MAX_DEPTH`` (a ``ParseError``, never a
  ``RecursionError``) and over-long text.
* ``parse`` evaluates nothing, and random text, token soups and one-character
  mutations of valid texts either parse or raise ``ParseError``.

The tests at the end pin bugs found while writing these tests (now fixed).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad import ir, parser
from stochgrad.analysis import check_scopes, parameters
from stochgrad.distributions import DISTRIBUTIONS, lookup
from stochgrad.ir import BinOp, Name, Neg, Num
from stochgrad.testing import strategies as sgst

ROUND_TRIPS = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

a, b, c, x, mu, sigma = (Name(n) for n in ("a", "b", "c", "x", "mu", "sigma"))


def parse_error(
    text: str, message: str, line: int, column: int, width: int = 1, *, expected: tuple[str, ...] = ()
) -> sg.ParseError:
    """Parse ``text``, expecting ``message`` at (line, column) with a caret ``width`` wide.

    With ``expected``, ``message`` is only the start of the message and the
    error must list (at least) those alternatives: where LALR merges states
    the full list is imprecise (see test_expected_lists_only_what_is_accepted)."""
    with pytest.raises(sg.ParseError, match=re.escape(message)) as info:
        sg.parse(text)
    err = info.value
    if expected:
        assert err.message.startswith(message)
        assert set(expected) <= set(err.expected)
        assert err.message == f"{message} {' or '.join(err.expected)}"
    else:
        assert err.message == message
    assert (err.line, err.column) == (line, column)
    head, source, caret = str(err).split("\n")
    assert head == f"{err.message} at line {line}, column {column}:"
    assert source == "  " + text.split("\n")[line - 1]
    assert caret == "  " + " " * (column - 1) + "^" * width
    return err


# ------------------------------------------------------------------ round trips


@ROUND_TRIPS
@given(sgst.expressions())
def test_parse_of_printed_expression_is_the_expression(e):
    text = str(e)
    parsed = sg.parse(text)
    assert parsed == e
    assert hash(parsed) == hash(e)
    assert str(parsed) == text


@ROUND_TRIPS
@given(sgst.texts(variables=("mu", "sigma", "E1", "exp"), max_depth=3))
def test_canonical_text_prints_back_unchanged(text):
    assert str(sg.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "E[z ** 2, z ~ Normal(mu, sigma)]",
        "E[x + z, z ~ Normal(mu, 1), x ~ Normal(z, sigma)]",
        "E[E[x * z, x ~ Uniform(z, z + 1)], z ~ Exponential(mu)]",
        "-x ** 2",
        "(-x) ** 2",
        "(-1) ** 2",
        "2 ** -1",
        "a ** b ** c",
        "(a ** b) ** c",
        "a - (b - c)",
        "a - b - c",
        "a / b / c",
        "a / (b / c)",
        "(a < b) < c",
        "a < (b < c)",
        "(a < b) + 1",
        "--a",
        "a - -1",
        "a * -b",
        "-0",
        "1e-07",
        "0.1",
        "1e+16",
        "sum(x, axis=-1)",
        "mean(exp(x) - 1, axis=0)",
        "-(a + b)",
        "E[z > 0, z ~ Normal(mu, sigma)]",
    ],
)
def test_hand_written_canonical_texts(text):
    assert str(sg.parse(text)) == text


def test_positions_take_no_part_in_equality():
    assert sg.parse("  mu +\n sigma") == sg.parse("mu + sigma")
    assert hash(sg.parse("  mu +\n sigma")) == hash(sg.parse("mu + sigma"))
    assert sg.parse("mu + sigma").span == (0, 10)


# ------------------------------------------------------- precedence and numbers


@pytest.mark.parametrize(
    "text, expected",
    [
        ("-x**2", Neg(BinOp("**", x, Num(2)))),
        ("-1**2", Neg(BinOp("**", Num(1), Num(2)))),
        ("(-1)**2", BinOp("**", Num(-1), Num(2))),
        ("2**-1", BinOp("**", Num(2), Num(-1))),
        ("2**-x", BinOp("**", Num(2), Neg(x))),
        ("a**b**c", BinOp("**", a, BinOp("**", b, c))),
        ("(a**b)**c", BinOp("**", BinOp("**", a, b), c)),
        ("a - (b - c)", BinOp("-", a, BinOp("-", b, c))),
        ("(a - b) - c", BinOp("-", BinOp("-", a, b), c)),
        ("a - b - c", BinOp("-", BinOp("-", a, b), c)),
        ("a / b / c", BinOp("/", BinOp("/", a, b), c)),
        ("a + b * c", BinOp("+", a, BinOp("*", b, c))),
        ("a * b + c", BinOp("+", BinOp("*", a, b), c)),
        ("-a * b", BinOp("*", Neg(a), b)),
        ("a < b + c", BinOp("<", a, BinOp("+", b, c))),
        ("a + b >= c * 2", BinOp(">=", BinOp("+", a, b), BinOp("*", c, Num(2)))),
        ("+a", a),
        ("--a", Neg(Neg(a))),
        ("-(2)", Num(-2)),
        ("-(-2)", Num(2)),
        ("1e-3", Num(0.001)),
        (".5", Num(0.5)),
        ("12", Num(12)),
        ("1.", Num(1)),
        ("1.5E+2", Num(150)),
        ("0.1", Num(0.1)),
        ("1e-7", Num(1e-7)),
    ],
)
def test_precedence_associativity_and_numbers(text, expected):
    assert sg.parse(text) == expected


def test_comparisons_do_not_chain():
    parse_error("a < b < c", "unexpected '<'; expected", 1, 7, expected=("'+'", "'-'", "end of input"))
    assert sg.parse("(a < b) < c") == BinOp("<", BinOp("<", a, b), c)


# ------------------------------------------- arguments, comments and newlines


@pytest.mark.parametrize(
    "args",
    ["mu, sigma", "loc=mu, scale=sigma", "scale=sigma, loc=mu", "mu, scale=sigma", " mu ,\n scale = sigma "],
)
def test_keyword_and_positional_distribution_arguments_give_equal_ir(args):
    e = sg.parse(f"E[z, z ~ Normal({args})]")
    assert e == sg.parse("E[z, z ~ Normal(mu, sigma)]")
    assert str(e) == "E[z, z ~ Normal(mu, sigma)]"
    assert e.bindings[0].dist.params == (("loc", mu), ("scale", sigma))


def test_comments_and_newlines_are_allowed():
    text = """
    # the second moment of a normal
    E[
        z ** 2,   # squared
        z ~ Normal(mu,
                   sigma)  # parameters
    ]  # end
    """
    assert sg.parse(text) == sg.parse("E[z**2, z ~ Normal(mu, sigma)]")
    assert sg.parse("mu # + sigma") == mu
    assert sg.parse("\t mu\r\n+ sigma\n") == mu + sigma


def test_multi_line_text_reports_the_right_line():
    parse_error("x +\n  y *\n  ) ", "unexpected ')'; expected '(' or '+' or '-' or 'E' or 'KL' or a name or a number", 3, 3)
    parse_error("x\n+\n$", "unexpected character '$'", 3, 1)  # (@ is matmul now)
    parse_error("1 +\n2 *\n  exq(3)", "unknown function 'exq' (did you mean 'exp'?)", 3, 3, width=3)
    parse_error(
        "E[x,\n  x ~ Normal(z, 1),\n  z ~ Normal(0, 1)]",
        "'z' is used before it is bound (bind it earlier in the E[...])", 2, 14,
    )


# ----------------------------------------------------------- the embedded form


def test_embedded_form_builds_the_same_ir_as_the_text():
    mu, sigma, z = sg.symbols("mu sigma z")
    e = sg.E(z**2, z=sg.Normal(mu, sigma))
    assert e == sg.parse("E[z**2, z ~ Normal(mu, sigma)]")
    assert hash(e) == hash(sg.parse("E[z**2, z ~ Normal(mu, sigma)]"))
    assert str(e) == "E[z ** 2, z ~ Normal(mu, sigma)]"
    assert sg.Normal(loc=mu, scale=sigma) == sg.Normal(mu, sigma)
    assert sg.E(z, z=sg.Normal(scale=sigma, loc=mu)) == sg.parse("E[z, z ~ Normal(loc=mu, scale=sigma)]")


@pytest.mark.parametrize(
    "build, text",
    [
        (lambda mu, sigma, z, x: sg.exp(mu), "exp(mu)"),
        (lambda mu, sigma, z, x: sg.sum(x, axis=-1), "sum(x, axis=-1)"),
        (lambda mu, sigma, z, x: sg.mean(x**2, axis=0), "mean(x**2, axis=0)"),
        (lambda mu, sigma, z, x: z > 0, "z > 0"),
        (lambda mu, sigma, z, x: z <= mu, "z <= mu"),
        (lambda mu, sigma, z, x: 0 < z, "z > 0"),  # Python reflects 0 < z into z > 0
        (lambda mu, sigma, z, x: 2 * z, "2 * z"),
        (lambda mu, sigma, z, x: 1 - z, "1 - z"),
        (lambda mu, sigma, z, x: 1 / z, "1 / z"),
        (lambda mu, sigma, z, x: 2**z, "2 ** z"),
        (lambda mu, sigma, z, x: 0.5 + z, "0.5 + z"),
        (lambda mu, sigma, z, x: -z, "-z"),
        (lambda mu, sigma, z, x: +z, "z"),
        (lambda mu, sigma, z, x: -(2 * z), "-(2 * z)"),
        (lambda mu, sigma, z, x: -(z**2), "-z ** 2"),
        (lambda mu, sigma, z, x: mu - sigma * -1, "mu - sigma * -1"),
        (
            lambda mu, sigma, z, x: sg.E(sg.sigmoid(x + z) > 0.5, z=sg.Normal(mu, 1), x=sg.Uniform(z, z + sigma)),
            "E[sigmoid(x + z) > 0.5, z ~ Normal(mu, 1), x ~ Uniform(z, z + sigma)]",
        ),
    ],
)
def test_embedded_functions_comparisons_and_reverse_operators(build, text):
    built = build(*sg.symbols("mu sigma z x"))
    assert built == sg.parse(text)
    assert str(built) == str(sg.parse(text))


# --------------------------------------------------------------------- errors


def test_parse_error_is_a_value_error():
    assert issubclass(sg.ParseError, sg.StochgradError)
    assert issubclass(sg.ParseError, ValueError)


def test_unexpected_character():
    parse_error("mu $ sigma", "unexpected character '$'", 1, 4)
    parse_error("mu == sigma", "unexpected '='; expected", 1, 4, expected=("'+'", "'**'", "a comparison"))


def test_unexpected_token_says_what_was_expected():
    err = parse_error("1 + * 2", "unexpected '*'; expected", 1, 5, expected=("'('", "'-'", "a name", "a number"))
    assert err.pos == 4 and err.text == "1 + * 2"
    parse_error("mu ** ** 2", "unexpected '**'; expected", 1, 7, width=2, expected=("'('", "a name", "a number"))
    parse_error("E[z, z Normal(0, 1)]", "unexpected 'Normal'; expected '~'", 1, 8, width=6)
    parse_error("E[z]", "unexpected ']'; expected", 1, 4, expected=("','", "'+'", "'*'", "a comparison"))
    parse_error("exp(x)(1)", "unexpected '('; expected", 1, 7, expected=("'*'", "'**'", "a comparison"))


def test_unexpected_end_of_input():
    err = parse_error("1 +", "unexpected end of input; expected '(' or '+' or '-' or 'E' or 'KL' or a name or a number",
                      1, 4)
    assert "a number" in err.expected
    parse_error("E[z, z ~ Normal(0, 1)", "unexpected end of input; expected ',' or ']'", 1, 22)
    parse_error("# only a comment", "unexpected end of input; expected '(' or '+' or '-' or 'E' or 'KL' or a name "
                "or a number", 1, 17)
    parse_error("exp(\n", "unexpected end of input; expected '(' or ')' or '+' or '-' or 'E' or 'KL' or a name "
                "or a number", 2, 1)


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
def test_empty_text(text):
    err = parse_error(text, "empty expression", 1, 1)
    assert err.expected == ("an expression",)


def test_unknown_function_suggests_the_closest():
    parse_error("exq(x)", "unknown function 'exq' (did you mean 'exp'?)", 1, 1, width=3)
    parse_error("mu + sigmod(x)", "unknown function 'sigmod' (did you mean 'sigmoid'?)", 1, 6, width=6)
    parse_error("qqqqq(x)", "unknown function 'qqqqq'", 1, 1, width=5)
    parse_error("Normal(0, 1)", "unknown function 'Normal': Normal is a distribution; draw from it with"
                " E[..., v ~ Normal(...)]", 1, 1, width=6)


def test_unknown_distribution_suggests_the_closest():
    parse_error("E[z, z ~ Normel(0, 1)]", "unknown distribution 'Normel' (did you mean 'Normal'?)", 1, 10,
                width=6)
    parse_error("E[z, z ~ exp(1)]", "unknown distribution 'exp'", 1, 10, width=3)


def test_function_argument_errors():
    parse_error("exp(1, 2)", "exp() takes 1 argument, got 2", 1, 1, width=3)
    parse_error("exp()", "exp() takes 1 argument, got 0", 1, 1, width=3)
    parse_error("sum(axis=1)", "sum() takes 1 argument, got 0", 1, 1, width=3)
    parse_error("sum(x, axes=1)", "sum() has no option 'axes'; it accepts axis", 1, 1, width=3)
    parse_error("exp(x, axis=1)", "exp() has no option 'axis'", 1, 1, width=3)
    parse_error("sum(x, axis=1, axis=2)", "sum() got option 'axis' twice", 1, 1, width=3)


@pytest.mark.parametrize("value", ["1.5", "y", "1 + 1", "-0.5"])
def test_option_must_be_an_integer_literal(value):
    parse_error(f"mu * mean(x, axis={value})",
                f"mean(): option 'axis' must be an integer literal, got {sg.parse(value)}", 1, 6, width=4)


def test_distribution_argument_errors():
    parse_error("E[z, z ~ Normal(0, 1, 2)]", "Normal(loc, scale) takes 2 arguments, got 3", 1, 10, width=6)
    parse_error("E[z, z ~ Normal(lo=0, scale=1)]",
                "Normal has no parameter 'lo' (did you mean 'loc'?); it takes Normal(loc, scale)", 1, 10, width=6)
    parse_error("E[z, z ~ Exponential(mean=1)]",
                "Exponential has no parameter 'mean'; it takes Exponential(rate)", 1, 10, width=11)
    parse_error("E[z, z ~ Normal(0)]", "Normal(loc, scale): missing parameter 'scale'", 1, 10, width=6)
    parse_error("E[z, z ~ Normal(scale=1)]", "Normal(loc, scale): missing parameter 'loc'", 1, 10, width=6)
    parse_error("E[z, z ~ Normal()]", "Normal(loc, scale): missing parameter 'loc'", 1, 10, width=6)
    parse_error("E[z, z ~ Normal(0, loc=1)]", "Normal: parameter 'loc' given twice", 1, 10, width=6)
    parse_error("E[z, z ~ Normal(0, scale=1, scale=2)]", "Normal: parameter 'scale' given twice", 1, 10, width=6)


def test_positional_argument_after_keyword():
    parse_error("E[z, z ~ Normal(loc=0, 1)]", "a positional argument cannot follow a keyword argument", 1, 24)
    parse_error("E[z, z ~ Normal(loc=0, mu + 1)]",
                "a positional argument cannot follow a keyword argument", 1, 24, width=6)
    parse_error("sum(axis=0, x)", "a positional argument cannot follow a keyword argument", 1, 13)


def test_scope_errors():
    parse_error("E[z, z ~ Normal(0, 1), z ~ Normal(z, 1)]", "'z' is bound twice in the same E[...]", 1, 24,
                width=16)
    parse_error("E[E[z, z ~ Normal(0, 1)], z ~ Normal(0, 1)]",
                "'z' is already bound by an enclosing E[...]; use another name", 1, 8, width=16)
    parse_error("E[z + E[x, x ~ Normal(0, 1), z ~ Normal(x, 1)], z ~ Normal(0, 1)]",
                "'z' is already bound by an enclosing E[...]; use another name", 1, 30, width=16)
    parse_error("E[x, x ~ Normal(z, 1), z ~ Normal(0, 1)]",
                "'z' is used before it is bound (bind it earlier in the E[...])", 1, 17)
    parse_error("E[x, x ~ Normal(x, 1)]", "'x' is used before it is bound (bind it earlier in the E[...])", 1, 17)
    parse_error("E[x, x ~ Normal(0, exp(x))]",
                "'x' is used before it is bound (bind it earlier in the E[...])", 1, 24)
    # the same names are fine where the scopes allow them
    assert parameters(sg.parse("E[z, z ~ Normal(0, 1)] + E[y, y ~ Normal(z, 1)]")) == ("z",)
    assert parameters(sg.parse("E[x, x ~ Normal(z, 1)] * E[z, z ~ Normal(0, 1)]")) == ("z",)


def test_E_is_not_a_name():
    parse_error("E + 1", "unexpected '+'; expected '['", 1, 3)
    parse_error("x + E", "unexpected end of input; expected '['", 1, 6)
    parse_error("E(1)", "unexpected '('; expected '['", 1, 2)
    parse_error("sum(x, E=1)", "unexpected '='; expected '['", 1, 9)
    # names that merely start with E are ordinary names
    assert sg.parse("E1 + Ez + E_") == Name("E1") + Name("Ez") + Name("E_")


@pytest.mark.parametrize(
    "text",
    [
        "(1+" * parser.MAX_DEPTH + "1" + ")" * parser.MAX_DEPTH,  # (1+(1+(...)))
        "-(" * parser.MAX_DEPTH + "x" + ")" * parser.MAX_DEPTH,
        "x" + "**x" * 5000,  # right-deep chain
        "-" * 5000 + "x",
        "exp(" * 2500 + "x" + ")" * 2500,
        "".join(f"E[z{i} + " for i in range(120)) + "1" + "".join(f", z{i} ~ Normal(0, 1)]" for i in range(120)),
    ],
    ids=["parenthesised", "negations", "power-chain", "minus-run", "calls", "expectations"],
)
def test_nesting_deeper_than_max_depth_is_a_parse_error(text):
    message = f"expression nested too deeply (more than {parser.MAX_DEPTH} levels)"
    with pytest.raises(sg.ParseError, match=re.escape(message)) as info:
        sg.parse(text)
    err = info.value
    assert err.line == 1 and 1 <= err.column <= len(text)
    assert str(err).split("\n")[2].strip() == "^"


def test_a_flat_chain_is_one_level_of_nesting():
    # a + b - c + ... of any length is no deeper than a + b (it used to be refused as nested
    # too deeply); tests/test_scaling.py checks such chains end to end
    e = sg.parse("+".join(["1"] * 5000))
    assert sg.parse(str(e)) == e and str(e) == " + ".join(["1"] * 5000)
    n = parser.MAX_DEPTH - 2  # the chain x * x / x at the bottom is two levels, its names a third
    nested = "(x + " * n + "x" + " - x * x / x" * 1000 + ")" * n  # long chains at every depth
    assert sg.parse(str(sg.parse(nested))) == sg.parse(nested)


def test_nesting_up_to_max_depth_parses_and_round_trips():
    n = parser.MAX_DEPTH - 1
    text = "(1+" * n + "1" + ")" * n
    e = sg.parse(text)
    assert sg.parse(str(e)) == e
    check_scopes(e)
    assert sum(1 for _ in ir.walk(e)) == 2 * n + 1


def test_redundant_parentheses_never_overflow_the_stack():
    # parentheses make no tree node, so only the text length bounds them; they must
    # not end in a RecursionError (nor in anything but x or a ParseError)
    for depth in (parser.MAX_DEPTH + 1, 5000, 49_999):
        try:
            assert sg.parse("(" * depth + "x" + ")" * depth) == x
        except sg.ParseError as err:
            assert "nested too deeply" in err.message


def test_over_long_text():
    text = "x" * (parser.MAX_LENGTH + 1)
    message = f"expression too long ({parser.MAX_LENGTH + 1} characters; at most {parser.MAX_LENGTH})"
    with pytest.raises(sg.ParseError, match=re.escape(message)) as info:
        sg.parse(text)
    # the whole text is at fault: no position and no caret
    assert (info.value.line, info.value.column, info.value.pos) == (None, None, None)
    assert str(info.value) == message
    assert sg.parse("x" * parser.MAX_LENGTH) == Name("x" * parser.MAX_LENGTH)


def test_parse_takes_only_text():
    with pytest.raises(TypeError, match="parse\\(\\) takes DSL text \\(str\\), got bytes"):
        sg.parse(b"mu")


# --------------------------------------------------------------------- safety


@pytest.mark.parametrize(
    "text, message, column, width",
    [
        ("__import__('os').system('echo hi')", "unexpected character \"'\"", 12, 1),
        ("__import__(os)", "unknown function '__import__'", 1, 10),
        ("eval(x)", "unknown function 'eval'", 1, 4),
        ("exec(x)", "unknown function 'exec'", 1, 4),
        ("mu.__class__", "unexpected character '.'", 3, 1),
        ("E[z, z ~ __import__(os)]", "unknown distribution '__import__'", 10, 10),
        ("open('/etc/passwd')", "unexpected character \"'\"", 6, 1),
        ("lambda: 1", "unexpected ':'; expected", 7, 1),
        ("x if y else z", "unexpected 'if'; expected", 3, 2),
        ("[x for x in y]", "unexpected '['; expected", 1, 1),
    ],
)
def test_parse_never_executes_anything(monkeypatch, capfd, text, message, column, width):
    import os
    import subprocess

    def forbidden(*args, **kwargs):
        raise AssertionError("parse() tried to run something")

    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    expected = ("'+'",) if message.endswith("expected") else ()
    parse_error(text, message, 1, column, width=width, expected=expected)
    assert capfd.readouterr() == ("", "")


# ----------------------------------------------------------------------- fuzz

def parses_or_raises_parse_error(text: str) -> None:
    try:
        e = sg.parse(text)
    except sg.ParseError as err:
        assert err.message and str(err).startswith(err.message)
        if err.line is not None:
            assert err.line >= 1 and err.column >= 1
            assert str(err).count("\n") == 2 and str(err).rstrip().endswith("^")
        return
    check_scopes(e)
    assert sg.parse(str(e)) == e


TOKENS = ["E", "[", "]", "(", ")", ",", "~", "+", "-", "*", "/", "**", "<", ">", "<=", ">=", "=", "mu", "z",
          "x", "1", "0.5", "1e-3", "Normal", "Uniform", "exp", "sum", "axis", "loc", "#", "\n", " "]


@FUZZ
@given(st.text(max_size=60))
def test_fuzz_random_text(text):
    parses_or_raises_parse_error(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=30), st.sampled_from([" ", ""]))
def test_fuzz_token_soup(tokens, sep):
    parses_or_raises_parse_error(sep.join(tokens))


MUTATION_CHARS = list("()[],~+-*/<>=#._ \n\teE019zx") + ["é", "\x00", "\u00a0", "٣"]


@FUZZ
@given(
    sgst.texts(max_depth=3),
    st.integers(min_value=0),
    st.sampled_from(["replace", "insert", "delete"]),
    st.one_of(st.sampled_from(MUTATION_CHARS), st.characters()),
)
def test_fuzz_single_character_mutations(text, where, how, char):
    i = where % (len(text) + (how == "insert"))
    if how == "replace":
        text = text[:i] + char + text[i + 1:]
    elif how == "insert":
        text = text[:i] + char + text[i:]
    else:
        text = text[:i] + text[i + 1:]
    parses_or_raises_parse_error(text)


# ------------------------------------------------------- the strategies themselves


@ROUND_TRIPS
@given(sgst.expressions(variables=("mu", "sigma", "theta")))
def test_generated_expressions_are_well_formed(e):
    check_scopes(e)
    assert set(parameters(e)) <= {"mu", "sigma", "theta"}
    for node in ir.walk(e):
        assert not (isinstance(node, Neg) and isinstance(node.operand, Num))
        if isinstance(node, ir.Expect):
            assert 1 <= len(node.bindings) <= 3


@settings(max_examples=30)
@given(sgst.expressions(variables=()))
def test_generated_expressions_without_parameters_are_closed(e):
    assert parameters(e) == ()


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_params_for_respects_constraints(name):
    dist = lookup(name)

    @settings(max_examples=40)
    @given(sgst.params_for(name))
    def check(values):
        assert set(values) in [set(f) for f in dist.forms()]
        assert all(isinstance(v, float) or dist.event_rank for v in values.values())
        dist.validate(values, where=name)

    check()


def test_params_for_unknown_distribution():
    with pytest.raises(sg.StochgradError, match="unknown distribution 'Normel' \\(did you mean 'Normal'\\?\\)"):
        sgst.params_for("Normel")


# ------------------------------------------------- regressions for bugs found by these tests


@pytest.mark.parametrize("text", ["1e999", "mu + 1" + "0" * 400], ids=["exponent", "digits"])
def test_overflowing_literal_is_a_parse_error(text):
    with pytest.raises(sg.ParseError, match="is too large"):
        sg.parse(text)


def test_E_as_a_bound_variable_is_a_parse_error():
    with pytest.raises(sg.ParseError, match="reserved"):
        sg.parse("E[1, E ~ Normal(0, 1)]")


def test_positional_negative_literal_after_keyword_has_a_position():
    parse_error("E[z, z ~ Normal(loc=0, -1)]", "a positional argument cannot follow a keyword argument", 1, 24,
                width=2)


def test_expected_lists_only_what_is_accepted():
    with pytest.raises(sg.ParseError) as info:
        sg.parse("a b")
    assert "end of input" in info.value.expected  # a alone is an expression
    assert "')'" not in info.value.expected and "','" not in info.value.expected  # no ( or E[ is open
    with pytest.raises(sg.ParseError) as info:
        sg.parse("1 + * 2")
    assert "'E'" in info.value.expected  # 1 + E[...] is fine
