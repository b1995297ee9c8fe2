"""Prior knowledge as hints for discovery, read from a small text file.

One statement per line (``#`` starts a comment)::

    require dx/dt: x, x*y           # these terms must appear in dx/dt
    forbid dy/dt: y^2               # these may not
    sign dx/dt: x*y < 0             # the coefficient of x*y in dx/dt is negative (or > 0)
    dy/dt = -c*y + d*x*y            # a known equation: y is not discovered, c and d are fitted
    dz/dt = -k*z + ...              # a known part; discovery adds terms in place of '...'
    c in [0, 5] = 1                 # bounds and start of a known equation's parameter
    terms: x/(1 + x), exp(-y)       # extra terms offered to every library
    nonnegative x, y                # these states may not go below zero
    conserve S + I + R              # a conservation law: d(S + I + R)/dt = 0

States are the data's observables; naming anything else is a :class:`ModelError` with the line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import sympy

from biotwin.errors import ModelError
from biotwin.model import Parameter, parse_expression

_NAME = r"[A-Za-z_][A-Za-z_0-9]*"
_TARGET = rf"d\s*\(?\s*({_NAME})\s*\)?\s*/\s*d\s*t"
_TERMS = re.compile(rf"^(require|forbid)\s+{_TARGET}\s*:(.*)$")
_SIGN = re.compile(rf"^sign\s+{_TARGET}\s*:(.*?)([<>])\s*0\s*$")
_EQUATION = re.compile(rf"^{_TARGET}\s*=(.*)$")
_BOUNDS = re.compile(rf"^({_NAME})\s+in\s+\[\s*([^,\]]+)\s*,\s*([^\]]+)\]\s*(?:=\s*(.+))?$")
_EXTRA = re.compile(r"^terms\s*:(.*)$")
_NONNEGATIVE = re.compile(rf"^nonnegative\s+({_NAME}(?:\s*,\s*{_NAME})*)\s*$")
_CONSERVE = re.compile(r"^conserve\s+(.+)$")
_OPEN = "..."


@dataclass(frozen=True)
class Prior:
    """What is known before discovery (see the module docstring for the file language).

    ``known`` maps a state to the known part of its right-hand side and ``complete`` says
    whether that part is all of it (no '...'). ``conserved`` holds linear laws sum_i a_i x_i =
    const as {state: a_i}.
    """

    required: Mapping[str, tuple[sympy.Expr, ...]] = field(default_factory=dict)
    forbidden: Mapping[str, tuple[sympy.Expr, ...]] = field(default_factory=dict)
    signs: Mapping[tuple[str, sympy.Expr], int] = field(default_factory=dict)
    known: Mapping[str, sympy.Expr] = field(default_factory=dict)
    complete: frozenset[str] = frozenset()
    parameters: tuple[Parameter, ...] = ()
    terms: tuple[sympy.Expr, ...] = ()
    nonnegative: frozenset[str] = frozenset()
    conserved: tuple[Mapping[str, float], ...] = ()

    def check(self, states: Sequence[str], inputs: Sequence[str] = ()) -> None:
        """Raise :class:`ModelError` when the prior names a state the data do not have, or a term
        uses a symbol that is neither a state nor one of the experiments' ``inputs``."""
        known_states = set(states)
        named = set(self.required) | set(self.forbidden) | {s for s, _ in self.signs} | set(self.known)
        named |= set(self.nonnegative) | {s for law in self.conserved for s in law}
        unknown = sorted(named - known_states)
        if unknown:
            raise ModelError(
                f"the prior names '{unknown[0]}', which is not a state of the data (states: {', '.join(states)})"
            )
        stray = sorted(
            s.name for e in (*self.terms, *(t for ts in self.required.values() for t in ts),
                             *(t for ts in self.forbidden.values() for t in ts), *(t for _, t in self.signs))
            for s in e.free_symbols if s.name not in known_states and s.name not in inputs
        )
        if stray:
            raise ModelError(f"a term of the prior uses '{stray[0]}', which is not a state or an input "
                             f"(states: {', '.join(states)}; inputs: {', '.join(inputs) or 'none'})")

    @property
    def dependent(self) -> dict[str, dict[str, float]]:
        """For each conservation law, its last state as a combination of the others' rates.

        sum_i a_i x_i = const gives dx_m/dt = -sum_{i != m} (a_i / a_m) dx_i/dt.
        """
        result = {}
        for law in self.conserved:
            last = list(law)[-1]
            result[last] = {s: -a / law[last] for s, a in law.items() if s != last}
        return result


def read_prior(path: str | Path) -> Prior:
    """Read a prior file."""
    from biotwin.io.files import parse_file

    return parse_file(path, "prior file", parse_prior)


def parse_prior(text: str) -> Prior:
    """Parse the prior language (see the module docstring)."""
    required: dict[str, list[sympy.Expr]] = {}
    forbidden: dict[str, list[sympy.Expr]] = {}
    signs: dict[tuple[str, sympy.Expr], int] = {}
    known: dict[str, sympy.Expr] = {}
    complete: set[str] = set()
    parameters: dict[str, Parameter] = {}
    terms: list[sympy.Expr] = []
    nonnegative: set[str] = set()
    conserved: list[dict[str, float]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if match := _TERMS.match(line):
            kind, state, listed = match.groups()
            (required if kind == "require" else forbidden).setdefault(state, []).extend(_list(listed, number))
        elif match := _SIGN.match(line):
            state, term, direction = match.groups()
            signs[(state, _term(term.strip(), number))] = 1 if direction == ">" else -1
        elif match := _EQUATION.match(line):
            state, body = match.group(1), match.group(2).strip()
            is_open = body.endswith(_OPEN)
            body = body[: -len(_OPEN)].rstrip().rstrip("+").strip() if is_open else body
            known[state] = parse_expression(body, number) if body else sympy.Integer(0)
            if not is_open:
                complete.add(state)
        elif match := _BOUNDS.match(line):
            name, low, high, value = match.groups()
            lower, upper = _number(low, number), _number(high, number)
            start = _number(value, number) if value else (0.5 * (lower + upper) if math.isfinite(lower + upper) else 1.0)
            try:
                parameters[name] = Parameter(name, start, lower, upper)
            except ModelError as error:
                raise ModelError(f"line {number}: {error}") from None
        elif match := _EXTRA.match(line):
            terms.extend(_list(match.group(1), number))
        elif match := _NONNEGATIVE.match(line):
            nonnegative.update(n.strip() for n in match.group(1).split(","))
        elif match := _CONSERVE.match(line):
            law = sympy.expand(parse_expression(match.group(1), number))
            coefficients = law.as_coefficients_dict()
            if any(not t.is_Symbol for t in coefficients) or not coefficients:
                raise ModelError(f"line {number}: a conservation law is a sum of states with constant weights, like 'S + I + R'")
            # In the order written: the last state named is the one the law determines.
            written = sorted(coefficients, key=lambda t: match.group(1).find(t.name))
            conserved.append({t.name: float(coefficients[t]) for t in written})
        else:
            raise ModelError(
                f"line {number}: cannot read '{line}'; expected 'require dx/dt: ...', 'forbid dx/dt: ...', "
                "'sign dx/dt: term < 0', 'dx/dt = ...', 'p in [lo, hi] = value', 'terms: ...', 'nonnegative x, y' "
                "or 'conserve x + y'"
            )
    symbols_in_known = {s.name for e in known.values() for s in e.free_symbols}
    unused = sorted(set(parameters) - symbols_in_known)
    if unused:
        raise ModelError(f"parameter '{unused[0]}' has bounds in the prior but no known equation uses it")
    return Prior(
        required=MappingProxyType({k: tuple(v) for k, v in required.items()}),
        forbidden=MappingProxyType({k: tuple(v) for k, v in forbidden.items()}),
        signs=MappingProxyType(signs), known=MappingProxyType(known), complete=frozenset(complete),
        parameters=tuple(parameters.values()), terms=tuple(terms), nonnegative=frozenset(nonnegative),
        conserved=tuple(MappingProxyType(law) for law in conserved),
    )


def _list(text: str, number: int) -> list[sympy.Expr]:
    parts = [p.strip() for p in _split_top_level(text) if p.strip()]
    if not parts:
        raise ModelError(f"line {number}: no terms listed after ':'")
    return [_term(p, number) for p in parts]


def _term(text: str, number: int) -> sympy.Expr:
    """A term without its leading constant: '2*x*y' and 'x*y' are the same term."""
    return parse_expression(text, number).as_coeff_Mul()[1]


def _number(text: str, number: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ModelError(f"line {number}: '{text.strip()}' is not a number") from None


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += char == "("
        depth -= char == ")"
        current.append(char)
    parts.append("".join(current))
    return parts
