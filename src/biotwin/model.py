"""ODE models: states, parameters, right-hand sides as SymPy expressions, observables, inputs.

A model is the system

    dx/dt = f(x, theta, u(t), t),    x(t0) = x0(theta),    y = g(x, theta)

with states x, parameters theta, piecewise-constant inputs u and observables y. Observables
may leave some states hidden. Models are written as text, one statement per line::

    # Lotka-Volterra predator-prey
    dx/dt = a*x - b*x*y
    dy/dt = -c*y + d*x*y
    a in [0, 5] = 1.0          # bounds and a default value
    k in [1e-3, 1e3] log       # searched on a log10 scale
    N = 763 fixed              # a known constant: held at its value by calibration
    x(0) = x0                  # initial value: a number or an expression of parameters
    v = Vmax*S/(Km + S)        # a named rate, substituted where it is used
    observable hare = s*x      # what is measured (default: every state, under its own name)
    input u                    # a piecewise-constant input given by each experiment
    state z                    # declare a state (it must then have an equation)

Any other symbol is a parameter (default value 1, unbounded). ``^`` means power; ``#`` starts
a comment. Errors raise :class:`ModelError` with the line number.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from tokenize import TokenError
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import sympy
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations
from sympy.printing.str import StrPrinter

from biotwin.errors import ModelError

TIME = sympy.Symbol("t")

FUNCTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "exp": sympy.exp, "log": sympy.log, "ln": sympy.log, "sqrt": sympy.sqrt,
        "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
        "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc, "acot": sympy.acot,
        "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
        "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
        "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
        "abs": sympy.Abs, "Abs": sympy.Abs, "min": sympy.Min, "max": sympy.Max,
        "Min": sympy.Min, "Max": sympy.Max, "Heaviside": sympy.Heaviside, "sign": sympy.sign,
    }
)
CONSTANTS: Mapping[str, Any] = MappingProxyType({"pi": sympy.pi})

_NAME = r"[A-Za-z_][A-Za-z_0-9]*"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_DERIVATIVE = re.compile(rf"^d\s*\(?\s*({_NAME})\s*\)?\s*/\s*d\s*t\s*=(.*)$")
_BOUNDS = re.compile(
    rf"^({_NAME})\s+in\s+[\[(]\s*({_NUMBER}|-?inf)\s*,\s*({_NUMBER}|-?inf)\s*[\])]\s*(log|log10|lin)?\s*(?:=\s*({_NUMBER}))?(\s+fixed)?$"
)
_INITIAL = re.compile(rf"^({_NAME})\s*\(\s*(?:0|t0)\s*\)\s*=(.*)$")
_OBSERVABLE = re.compile(rf"^(?:observable|obs)\s+({_NAME})\s*=(.*)$")
_DECLARATION = re.compile(rf"^(input|inputs|state|states)\s+({_NAME}(?:\s*,\s*{_NAME})*)\s*$")
_ASSIGNMENT = re.compile(rf"^({_NAME})\s*=(.*)$")
_CALL = re.compile(rf"({_NAME})\s*\(")
_NUMBER_IN_TEXT = re.compile(r"(?<![A-Za-z_0-9])(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PARSER_GLOBALS: Mapping[str, Any] = MappingProxyType(
    {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational, "Symbol": sympy.Symbol}
)

Scale = Literal["lin", "log10"]


@dataclass(frozen=True)
class Parameter:
    """A model parameter with its default value and the interval it may take.

    ``scale`` says how calibration should search it: ``"log10"`` for rates that span decades
    (then both bounds must be positive). A ``fixed`` parameter is a known constant (a population
    size, a molecular weight): calibration holds it at ``value`` instead of estimating it.
    """

    name: str
    value: float = 1.0
    lower: float = -math.inf
    upper: float = math.inf
    scale: Scale = "lin"
    fixed: bool = False

    def __post_init__(self) -> None:
        if not self.lower <= self.upper:
            raise ModelError(f"parameter '{self.name}': lower bound {self.lower} is above upper bound {self.upper}")
        if not math.isfinite(self.value) or not self.lower <= self.value <= self.upper:
            raise ModelError(
                f"parameter '{self.name}': value {self.value} lies outside its bounds [{self.lower}, {self.upper}]"
            )
        if self.scale == "log10" and self.lower <= 0:
            raise ModelError(f"parameter '{self.name}' is searched on a log scale, so its lower bound must be > 0")

    def to_text(self) -> str:
        bounds = "" if (self.lower, self.upper) == (-math.inf, math.inf) else f" in [{_num(self.lower)}, {_num(self.upper)}]"
        scale = " log" if self.scale == "log10" else ""
        fixed = " fixed" if self.fixed else ""
        return f"{self.name}{bounds}{scale} = {_num(self.value)}{fixed}"


@dataclass(frozen=True)
class Observable:
    """A measured quantity y = g(x, theta): an expression of states and (observation) parameters."""

    name: str
    expr: sympy.Expr


def _num(value: float) -> str:
    """Shortest text that reads back as the same float."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


@dataclass(frozen=True, eq=False)
class Model:
    """An ODE model dx/dt = f(x, theta, u, t) with observables y = g(x, theta).

    Build one from text with :meth:`from_text`, or directly from SymPy expressions. Symbols in
    the right-hand sides that are not states, inputs or ``t`` become parameters (default value 1,
    unbounded) unless ``parameters`` declares them.
    """

    states: tuple[str, ...]
    rhs: tuple[sympy.Expr, ...]
    parameters: tuple[Parameter, ...] = ()
    observables: tuple[Observable, ...] = ()
    inputs: tuple[str, ...] = ()
    initial: Mapping[str, sympy.Expr] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        states = tuple(str(s) for s in self.states)
        rhs = tuple(sympy.sympify(e) for e in self.rhs)
        inputs = tuple(str(u) for u in self.inputs)
        if len(states) != len(rhs):
            raise ModelError(f"{len(states)} states but {len(rhs)} right-hand sides; give one equation per state")
        if not states:
            raise ModelError("the model has no equations; write at least one line 'dx/dt = ...'")
        for names, what in ((states, "state"), (inputs, "input")):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ModelError(f"{what} {repeated[0]!r} is defined twice")
        clash = set(states) & set(inputs)
        if clash:
            raise ModelError(f"'{sorted(clash)[0]}' is both a state and an input; rename one")
        if "t" in states or "t" in inputs:
            raise ModelError("'t' is time; it cannot be a state or an input")
        observables = self.observables or tuple(Observable(s, sympy.Symbol(s)) for s in states)
        observables = tuple(Observable(o.name, sympy.sympify(o.expr)) for o in observables)
        observable_names = [o.name for o in observables]
        if len(set(observable_names)) != len(observable_names):
            raise ModelError(f"observable names repeat: {observable_names}")
        initial = {str(k): sympy.sympify(v) for k, v in dict(self.initial).items()}
        for state in initial:
            if state not in states:
                raise ModelError(f"'{state}' has an initial value but no equation; add a line 'd{state}/dt = ...'")

        reserved = set(states) | set(inputs) | {"t"}
        declared = {p.name: p for p in self.parameters}
        for p in declared:
            if p in reserved:
                raise ModelError(f"'{p}' is declared as a parameter but is also a state, an input or time")
        used: list[str] = []
        for expr in (*rhs, *(o.expr for o in observables), *initial.values()):
            for symbol in sorted(expr.free_symbols, key=lambda s: s.name):
                if symbol.name not in reserved and symbol.name not in used:
                    used.append(symbol.name)
        for state, expr in initial.items():
            bad = sorted(s.name for s in expr.free_symbols if s.name in reserved)
            if bad:
                raise ModelError(f"initial value of '{state}' uses {bad[0]!r}; it may use parameters and numbers only")
        unused = [p for p in declared if p not in used]
        if unused:
            raise ModelError(
                f"unknown symbol '{unused[0]}': it is declared as a parameter but no equation, observable or "
                "initial value uses it"
            )
        # Declared parameters keep their declared order; the others follow in order of appearance.
        parameters = tuple(declared.values()) + tuple(Parameter(name) for name in used if name not in declared)
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "rhs", rhs)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "observables", observables)
        object.__setattr__(self, "initial", MappingProxyType(initial))
        object.__setattr__(self, "parameters", parameters)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_text(cls, text: str, *, name: str | None = None) -> Model:
        """Parse the model language described in this module's docstring."""
        return _parse(text, name)

    @classmethod
    def from_file(cls, path: str) -> Model:
        """Read a model file (the text language of :meth:`from_text`)."""
        from pathlib import Path

        from biotwin.io.files import parse_file

        return parse_file(path, "model file", lambda text: _parse(text, Path(path).stem))

    # ------------------------------------------------------------------ lookups
    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def free_parameter_names(self) -> tuple[str, ...]:
        """The parameters calibration estimates by default: all but the ``fixed`` ones."""
        return tuple(p.name for p in self.parameters if not p.fixed)

    @property
    def observable_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.observables)

    @property
    def hidden_states(self) -> tuple[str, ...]:
        """States that no observable depends on."""
        seen = set().union(*(o.expr.free_symbols for o in self.observables))
        return tuple(s for s in self.states if sympy.Symbol(s) not in seen)

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise ModelError(self.unknown_message("parameter", name, self.parameter_names))

    def parameter_vector(self, values: Mapping[str, float] | None = None) -> np.ndarray:
        """Parameter values in model order: the defaults, replaced by ``values`` where given."""
        values = dict(values or {})
        for key in values:
            if key not in self.parameter_names:
                raise ModelError(self.unknown_message("parameter", key, self.parameter_names))
        return np.array([float(values.get(p.name, p.value)) for p in self.parameters])

    def state_vector(self, values: Mapping[str, float] | None = None, parameters: Mapping[str, float] | None = None) -> np.ndarray:
        """Initial state in model order: ``values`` where given, else the model's initial expression.

        Raises :class:`ModelError` naming any state that has neither.
        """
        values = dict(values or {})
        for key in values:
            if key not in self.states:
                raise ModelError(self.unknown_message("state", key, self.states))
        theta = dict(zip(self.parameter_names, self.parameter_vector(parameters)))
        y0 = []
        for state in self.states:
            if state in values:
                y0.append(float(values[state]))
            elif state in self.initial:
                y0.append(self.initial_value(state, theta))
            else:
                raise ModelError(
                    f"no initial value for state '{state}'; give it (e.g. --y0 {state}=1) or add '{state}(0) = ...' to the model"
                )
        return np.array(y0)

    def initial_value(self, state: str, parameters: Mapping[str, float]) -> float:
        """The model's initial value of ``state`` at the given parameter values."""
        return float(self.initial[state].subs({sympy.Symbol(k): v for k, v in parameters.items()}))

    @staticmethod
    def unknown_message(what: str, name: str, known: Sequence[str]) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown {what} '{name}'{hint} (the model's {what}s are: {', '.join(known) or 'none'})"

    # ------------------------------------------------------------------ compilation
    @cached_property
    def compiled(self) -> CompiledModel:
        """The model as JAX functions, built once per model (see :class:`CompiledModel`)."""
        return CompiledModel.build(self)

    # ------------------------------------------------------------------ rendering
    def to_text(self) -> str:
        """The model in its text language; ``Model.from_text(m.to_text())`` gives the same model."""
        lines = [f"d{s}/dt = {_text(e)}" for s, e in zip(self.states, self.rhs)]
        if self.inputs:
            lines.append("input " + ", ".join(self.inputs))
        lines += [f"{s}(0) = {_text(e)}" for s, e in self.initial.items()]
        default_observables = tuple(Observable(s, sympy.Symbol(s)) for s in self.states)
        if self.observables != default_observables:
            lines += [f"observable {o.name} = {_text(o.expr)}" for o in self.observables]
        lines += [p.to_text() for p in self.parameters]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"Model({self.name or 'unnamed'}: states {', '.join(self.states)}; parameters {', '.join(self.parameter_names)})"

    def to_latex(self) -> str:
        """The equations as a LaTeX ``aligned`` block."""
        rows = [rf"\frac{{d{_latex_name(s)}}}{{dt}} &= {sympy.latex(e)}" for s, e in zip(self.states, self.rhs)]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def to_mathml(self) -> str:
        """The equations as presentation MathML (one ``<math>`` element), for HTML reports."""
        rows = []
        for s, e in zip(self.states, self.rhs):
            # Multi-letter names (hare, lynx) need a visible product sign: "β·hare·lynx", not "βharelynx".
            body = sympy.mathml(e, printer="presentation").replace("&InvisibleTimes;", "&#x22C5;")
            lhs = f"<mfrac><mrow><mi>d</mi><mi>{s}</mi></mrow><mrow><mi>d</mi><mi>t</mi></mrow></mfrac>"
            rows.append(f"<mtr><mtd>{lhs}</mtd><mtd><mo>=</mo></mtd><mtd>{body}</mtd></mtr>")
        return f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"><mtable>{"".join(rows)}</mtable></math>'

    def _repr_latex_(self) -> str:
        return "$$" + self.to_latex() + "$$"

    def _repr_html_(self) -> str:
        """The equations (MathML) and the parameters as a table, for notebooks."""
        from biotwin.report.tables import html_table

        rows = [(p.name, p.value, p.lower, p.upper, p.scale) for p in self.parameters]
        return self.to_mathml() + html_table(("parameter", "value", "lower", "upper", "scale"), rows, caption=repr(self))


class _ExactPrinter(StrPrinter):
    """SymPy's text printer, with every float written as the shortest text that reads back exactly."""

    def _print_Float(self, expr: sympy.Float) -> str:
        return repr(float(expr))


def _text(expr: sympy.Expr) -> str:
    return _ExactPrinter().doprint(expr)


def _latex_name(name: str) -> str:
    return sympy.latex(sympy.Symbol(name))


# ---------------------------------------------------------------------- compiled form
@dataclass(frozen=True)
class CompiledModel:
    """A model as JAX functions of arrays, traced and compiled once per model structure.

    * ``rhs(t, y, p, u) -> dy/dt`` with y (n_states,), p (n_parameters,), u (n_inputs,);
    * ``observe(t, y, p, u) -> y_obs`` (n_observables,);
    * ``jacobian(t, y, p, u) -> df/dy`` (n_states, n_states).
    """

    rhs: Callable[..., Any]
    observe: Callable[..., Any]
    jacobian: Callable[..., Any]
    n_states: int
    n_parameters: int
    n_inputs: int

    @classmethod
    def build(cls, model: Model) -> CompiledModel:
        import jax
        import jax.numpy as jnp

        from biotwin import _jax  # noqa: F401  (float64 everywhere)

        y = [sympy.Symbol(s) for s in model.states]
        p = [sympy.Symbol(n) for n in model.parameter_names]
        u = [sympy.Symbol(n) for n in model.inputs]
        arguments = [TIME, y, p, u]
        rhs_list = sympy.lambdify(arguments, list(model.rhs), modules="jax", cse=True)
        observe_list = sympy.lambdify(arguments, [o.expr for o in model.observables], modules="jax", cse=True)

        def stack(values: list[Any], t: Any) -> Any:
            # A constant right-hand side comes back as a Python number; broadcasting against t
            # gives every entry the same dtype and batch shape.
            zero = jnp.zeros_like(t, dtype=jnp.float64)
            return jnp.stack([zero + v for v in values], axis=-1)

        def rhs(t: Any, state: Any, theta: Any, inputs: Any) -> Any:
            return stack(rhs_list(t, _split(state, len(y)), _split(theta, len(p)), _split(inputs, len(u))), t)

        def observe(t: Any, state: Any, theta: Any, inputs: Any) -> Any:
            return stack(observe_list(t, _split(state, len(y)), _split(theta, len(p)), _split(inputs, len(u))), t)

        # Jitted on their own for direct calls; inside a solve they are traced into the solver's program.
        jacobian = jax.jit(jax.jacfwd(rhs, argnums=1))
        return cls(jax.jit(rhs), jax.jit(observe), jacobian, len(y), len(p), len(u))


def _split(vector: Any, n: int) -> list[Any]:
    return [vector[..., i] for i in range(n)]


# ---------------------------------------------------------------------- parser
def _parse(text: str, name: str | None) -> Model:
    states: list[str] = []
    rhs_text: dict[str, tuple[int, str]] = {}
    parameters: dict[str, Parameter] = {}
    parameter_lines: dict[str, int] = {}
    observables: list[tuple[int, str, str]] = []
    initial_text: dict[str, tuple[int, str]] = {}
    assignments: dict[str, tuple[int, str]] = {}
    inputs: list[str] = []
    declared_states: dict[str, int] = {}

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if match := _DERIVATIVE.match(line):
            state, expr = match.group(1), match.group(2).strip()
            if state in rhs_text:
                raise ModelError(f"line {number}: a second equation for '{state}' (the first is on line {rhs_text[state][0]})")
            states.append(state)
            rhs_text[state] = (number, expr)
        elif match := _BOUNDS.match(line):
            pname, lower, upper, scale, value, fixed = match.groups()
            lo, hi = float(lower), float(upper)
            default = float(value) if value is not None else _default_value(lo, hi, scale)
            parameters[pname] = _parameter(number, pname, default, lo, hi, "log10" if scale in ("log", "log10") else "lin",
                                           fixed=fixed is not None)
            parameter_lines[pname] = number
        elif match := _INITIAL.match(line):
            initial_text[match.group(1)] = (number, match.group(2).strip())
        elif match := _OBSERVABLE.match(line):
            observables.append((number, match.group(1), match.group(2).strip()))
        elif match := _DECLARATION.match(line):
            names = [n.strip() for n in match.group(2).split(",")]
            if match.group(1).startswith("input"):
                inputs.extend(names)
            else:
                declared_states.update({n: number for n in names})
        elif match := _ASSIGNMENT.match(line):
            left, right = match.group(1), match.group(2).strip()
            if constant := re.fullmatch(rf"({_NUMBER})(\s+fixed)?", right):
                parameters[left] = _parameter(number, left, float(constant.group(1)), -math.inf, math.inf, "lin",
                                              fixed=constant.group(2) is not None)
                parameter_lines[left] = number
            else:
                assignments[left] = (number, right)
        else:
            raise ModelError(
                f"line {number}: cannot read '{line}'; expected 'dx/dt = ...', 'p in [lo, hi] = value', "
                "'p = value', 'x(0) = ...', 'observable y = ...', 'input u' or 'state x'"
            )

    if not states:
        raise ModelError("the model has no equations; write at least one line 'dx/dt = ...'")
    for state, number in declared_states.items():
        if state not in rhs_text:
            raise ModelError(f"line {number}: state '{state}' has no equation; add a line 'd{state}/dt = ...'")
    for state, (number, _) in initial_text.items():
        if state not in rhs_text:
            raise ModelError(f"line {number}: '{state}' has an initial value but no equation; add a line 'd{state}/dt = ...'")
    for pname, number in parameter_lines.items():
        if pname in rhs_text or pname in inputs:
            raise ModelError(f"line {number}: '{pname}' is a state or an input, not a parameter; it cannot have bounds or a value")

    # Named rates: parsed in order, each may use the earlier ones.
    substitutions: dict[sympy.Symbol, sympy.Expr] = {}
    for left, (number, right) in assignments.items():
        if left in rhs_text or left in inputs:
            raise ModelError(f"line {number}: '{left}' is a state or an input and cannot be assigned an expression")
        substitutions[sympy.Symbol(left)] = parse_expression(right, number).subs(substitutions)

    def parsed(number: int, source: str) -> sympy.Expr:
        return parse_expression(source, number).subs(substitutions)

    rhs = tuple(parsed(*rhs_text[s]) for s in states)
    observable_values = tuple(Observable(oname, parsed(number, source)) for number, oname, source in observables)
    initial = {state: parsed(number, source) for state, (number, source) in initial_text.items()}
    for state, (number, _) in initial_text.items():
        bad = sorted(s.name for s in initial[state].free_symbols if s.name in rhs_text or s.name in inputs or s.name == "t")
        if bad:
            raise ModelError(f"line {number}: the initial value of '{state}' uses '{bad[0]}'; use numbers and parameters only")
    used = set().union(*(e.free_symbols for e in (*rhs, *(o.expr for o in observable_values), *initial.values())))
    for pname, number in parameter_lines.items():
        if sympy.Symbol(pname) not in used:
            raise ModelError(
                f"line {number}: unknown symbol '{pname}': no equation, observable or initial value uses it "
                f"(symbols in the equations: {', '.join(sorted(s.name for s in used)) or 'none'})"
            )
    for uname in inputs:
        if uname in rhs_text:
            raise ModelError(f"input '{uname}' also has an equation; an input is given by the experiment, not computed")
    return Model(
        states=tuple(states),
        rhs=rhs,
        parameters=tuple(parameters.values()),
        observables=observable_values,
        inputs=tuple(inputs),
        initial=initial,
        name=name,
    )


def _default_value(lower: float, upper: float, scale: str | None) -> float:
    """A start inside the bounds: the geometric middle on a log scale, else the middle (or a finite bound)."""
    if scale in ("log", "log10") and lower > 0 and math.isfinite(upper):
        return math.sqrt(lower * upper)
    if math.isfinite(lower) and math.isfinite(upper):
        return 0.5 * (lower + upper)
    if math.isfinite(lower):
        return max(lower, 1.0) if lower <= 1.0 else lower
    if math.isfinite(upper):
        return min(upper, 1.0)
    return 1.0


def _parameter(number: int, name: str, value: float, lower: float, upper: float, scale: Scale,
               fixed: bool = False) -> Parameter:
    try:
        return Parameter(name, value, lower, upper, scale, fixed)
    except ModelError as error:
        raise ModelError(f"line {number}: {error}") from None


def parse_expression(source: str, number: int = 1) -> sympy.Expr:
    """Parse one expression of the model language: every name is a symbol except the known functions and ``pi``.

    ``number`` is the line it came from, for the messages of the :class:`ModelError` it raises.
    """
    if not source:
        raise ModelError(f"line {number}: nothing after '='; write an expression")
    for match in _CALL.finditer(source):
        if match.group(1) not in FUNCTIONS:
            known = ", ".join(sorted(set(FUNCTIONS)))
            raise ModelError(f"line {number}: unknown function '{match.group(1)}' (known functions: {known})")
    names = set(re.findall(_NAME, re.sub(_NUMBER_IN_TEXT, " ", source)))
    local: dict[str, Any] = {}
    safe_source = source
    for identifier in names:
        if identifier in FUNCTIONS:
            local[identifier] = FUNCTIONS[identifier]
        elif identifier in CONSTANTS:
            local[identifier] = CONSTANTS[identifier]
        elif keyword.iskeyword(identifier) or identifier in ("True", "False", "None"):
            alias = f"{identifier}__biotwin"
            safe_source = re.sub(rf"\b{identifier}\b", alias, safe_source)
            local[alias] = sympy.Symbol(identifier)
        else:
            local[identifier] = sympy.Symbol(identifier)
    try:
        expr = parse_expr(
            safe_source,
            local_dict=local,
            global_dict=dict(_PARSER_GLOBALS),
            transformations=standard_transformations + (convert_xor,),
            evaluate=True,
        )
    except (SyntaxError, TypeError, ValueError, AttributeError, sympy.SympifyError, TokenError) as error:
        detail = getattr(error, "msg", None) or (str(error).splitlines() or [type(error).__name__])[0]
        raise ModelError(f"line {number}: syntax error in '{source}' ({detail})") from None
    if not isinstance(expr, sympy.Expr):
        raise ModelError(f"line {number}: '{source}' is not an arithmetic expression")
    # Numbers in double precision, as they are computed: text written by to_text reads back equal.
    expr = expr.xreplace({f: sympy.Float(float(f)) for f in expr.atoms(sympy.Float)})
    if expr.has(sympy.zoo, sympy.oo, sympy.nan):
        raise ModelError(f"line {number}: '{source}' evaluates to an infinite or undefined value")
    return expr

