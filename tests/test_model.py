"""The model language: what parses, what it means, and every mistake with its line number."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from biotwin.errors import ModelError
from biotwin.model import Model, Parameter

LOTKA_VOLTERRA = """
# predator-prey
dx/dt = a*x - b*x*y
dy/dt = -c*y + d*x*y
a in [0, 5] = 1.0
"""


def test_issue_example_parses_with_undeclared_symbols_as_parameters():
    model = Model.from_text(LOTKA_VOLTERRA)
    assert model.states == ("x", "y")
    assert model.parameter_names == ("a", "b", "c", "d")
    a = model.parameter("a")
    assert (a.value, a.lower, a.upper, a.scale) == (1.0, 0.0, 5.0, "lin")
    b = model.parameter("b")
    assert (b.value, b.lower, b.upper) == (1.0, -math.inf, math.inf)
    x, y = sympy.symbols("x y")
    assert sympy.simplify(model.rhs[0] - (sympy.Symbol("a") * x - sympy.Symbol("b") * x * y)) == 0
    assert model.observable_names == ("x", "y") and model.hidden_states == ()


def test_full_language():
    model = Model.from_text(
        """
        d(S)/dt = -v + u            # rate of a named expression, plus an input
        dP/dt = v
        v = Vmax*S/(Km + S)
        Vmax = 2
        Km in [1e-3, 1e3] log
        S(0) = S0
        P(0) = 0
        S0 in [0, 100] = 10
        observable product = scale*P
        input u
        state S, P
        """
    )
    assert model.states == ("S", "P") and model.inputs == ("u",)
    assert model.parameter("Km").scale == "log10" and model.parameter("Km").value == pytest.approx(1.0)
    assert model.parameter("Vmax").value == 2.0
    assert model.observable_names == ("product",) and model.hidden_states == ("S",)
    assert model.state_vector() .tolist() == [10.0, 0.0]
    assert model.state_vector(parameters={"S0": 4.0}).tolist() == [4.0, 0.0]
    rhs = model.compiled.rhs(0.0, jnp.array([1.0, 0.0]), jnp.asarray(model.parameter_vector()), jnp.array([0.5]))
    np.testing.assert_allclose(np.asarray(rhs), [-2.0 * 1.0 / 2.0 + 0.5, 1.0])


def test_names_that_sympy_would_misread_are_plain_symbols():
    model = Model.from_text("dS/dt = -beta*S*I/N + lambda\ndI/dt = beta*S*I/N - gamma*I\ndE/dt = -E")
    assert set(model.parameter_names) == {"beta", "N", "lambda", "gamma"}
    value = model.compiled.rhs(0.0, jnp.array([1.0, 2.0, 3.0]), jnp.asarray(model.parameter_vector({"lambda": 0.5})), jnp.zeros(0))
    order = dict(zip(model.parameter_names, model.parameter_vector({"lambda": 0.5})))
    assert float(value[0]) == pytest.approx(-order["beta"] * 2 / order["N"] + 0.5)
    assert float(value[2]) == -3.0


def test_compiled_functions_match_sympy_evaluation():
    model = Model.from_text("dx/dt = a*sin(t)*x^2 - exp(-y)\ndy/dt = sqrt(x) / (1 + y^n)\na = 0.7\nn = 3")
    state, theta, t = np.array([1.3, 0.4]), model.parameter_vector(), 0.9
    substitutions = {sympy.Symbol("x"): 1.3, sympy.Symbol("y"): 0.4, sympy.Symbol("t"): t, sympy.Symbol("a"): 0.7, sympy.Symbol("n"): 3}
    expected = [float(e.subs(substitutions)) for e in model.rhs]
    got = model.compiled.rhs(t, jnp.asarray(state), jnp.asarray(theta), jnp.zeros(0))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12)
    jacobian = np.asarray(model.compiled.jacobian(t, jnp.asarray(state), jnp.asarray(theta), jnp.zeros(0)))
    assert jacobian.shape == (2, 2) and jacobian[0, 0] == pytest.approx(2 * 0.7 * math.sin(t) * 1.3)


def test_text_round_trip():
    model = Model.from_text(LOTKA_VOLTERRA + "x(0) = 10\nobservable prey = x\nk in [1e-3, 10] log = 0.5\ndz/dt = -k*z")
    again = Model.from_text(model.to_text())
    assert again.to_text() == model.to_text()
    assert again.parameters == model.parameters
    computed = Model.from_text("dx/dt = -x^3/3. + cot(x)")  # a coefficient SymPy computed, a function of ODEBench
    assert Model.from_text(computed.to_text()).rhs == computed.rhs


def test_declared_parameters_keep_their_order():
    assert Model.from_text("dx/dt = b*x + a + c\nb = 2\na = 1").parameter_names == ("b", "a", "c")


def test_latex_and_mathml():
    model = Model.from_text(LOTKA_VOLTERRA)
    latex = model.to_latex()
    assert r"\frac{dx}{dt} &= a x - b x y" in latex and latex.startswith(r"\begin{aligned}")
    mathml = model.to_mathml()
    assert mathml.startswith("<math") and "<mfrac>" in mathml and "<mi>b</mi>" in mathml
    # Products show a dot, so that multi-letter names do not run together.
    assert "&InvisibleTimes;" not in mathml and "<mi>b</mi><mo>&#x22C5;</mo><mi>x</mi>" in mathml
    assert model._repr_latex_().startswith("$$")


# ---------------------------------------------------------------------- mistakes
def error_of(text: str) -> str:
    with pytest.raises(ModelError) as raised:
        Model.from_text(text)
    return str(raised.value)


def test_unknown_symbol_declared_but_unused():
    message = error_of("dx/dt = -k*x\nkk in [0, 1] = 0.5")
    assert message.startswith("line 2: unknown symbol 'kk'") and "k, x" in message


def test_state_without_an_equation():
    assert error_of("dx/dt = -x\nstate x, z").startswith("line 2: state 'z' has no equation; add a line 'dz/dt = ...'")
    assert "line 2: 'z' has an initial value but no equation" in error_of("dx/dt = -x\nz(0) = 1")


def test_syntax_error_names_the_line():
    message = error_of("dx/dt = -k*x\ndy/dt = (x + * y")
    assert message.startswith("line 2: syntax error in '(x + * y'")


def test_unreadable_line_names_the_line():
    assert error_of("dx/dt = -x\nthis is not a statement").startswith("line 2: cannot read 'this is not a statement'")


def test_unknown_function():
    message = error_of("dx/dt = hill(x, 2)")
    assert message.startswith("line 1: unknown function 'hill'") and "exp" in message


def test_second_equation_for_a_state():
    assert error_of("dx/dt = -x\ndx/dt = x") == "line 2: a second equation for 'x' (the first is on line 1)"


def test_no_equations():
    assert "no equations" in error_of("# nothing\na = 1")


def test_value_outside_bounds():
    assert error_of("dx/dt = -k*x\nk in [0, 1] = 2").startswith("line 2: parameter 'k': value 2.0 lies outside its bounds")


def test_log_scale_needs_positive_bounds():
    assert "lower bound must be > 0" in error_of("dx/dt = -k*x\nk in [0, 1] log = 0.5")


def test_bounds_on_a_state():
    assert "'x' is a state or an input" in error_of("dx/dt = -k*x\nx in [0, 1] = 0.5")


def test_initial_value_may_not_use_states():
    assert "initial value of 'x' uses 'y'" in error_of("dx/dt = -x\ndy/dt = -y\nx(0) = y")


def test_empty_right_hand_side():
    assert error_of("dx/dt =") == "line 1: nothing after '='; write an expression"


def test_unknown_parameter_name_when_giving_values():
    model = Model.from_text(LOTKA_VOLTERRA)
    with pytest.raises(ModelError, match=r"unknown parameter 'bb'; did you mean 'b'\?"):
        model.parameter_vector({"bb": 1.0})
    with pytest.raises(ModelError, match="unknown state 'z'"):
        model.state_vector({"z": 1.0})
    with pytest.raises(ModelError, match="no initial value for state 'x'"):
        model.state_vector()


def test_direct_construction_declares_parameters():
    x = sympy.Symbol("x")
    model = Model(("x",), (-sympy.Symbol("k") * x,), parameters=(Parameter("k", 0.3, 0.0, 1.0),))
    assert model.parameters == (Parameter("k", 0.3, 0.0, 1.0),)
    with pytest.raises(ModelError, match="unknown symbol 'q'"):
        Model(("x",), (-x,), parameters=(Parameter("q"),))


def test_fixed_parameters_are_known_constants():
    model = Model.from_text("dS/dt = -b*S*I/N\ndI/dt = b*S*I/N - g*I/K\nb in [0, 5] = 1.7\ng in [0, 2] = 0.5\n"
                            "N = 763 fixed\nK in [1, 10] = 2 fixed\nS(0) = 760\nI(0) = 3")
    assert model.parameter("N").fixed and model.parameter("K").fixed and not model.parameter("b").fixed
    assert model.free_parameter_names == ("b", "g")
    again = Model.from_text(model.to_text())
    assert again.parameter("N") == model.parameter("N") and again.parameter("K") == model.parameter("K")
    assert "N = 763.0 fixed" in model.to_text()
