"""Read SBML models (through python-libsbml) into a :class:`~biotwin.model.Model`.

The ODE system follows SBML's semantics. A species S in compartment c that is not fixed
(boundary condition or constant) and not set by a rule changes through the reactions it takes
part in; kinetic laws are in amount per time, so

    d[S]/dt = sum_r n_{S,r} v_r / |c|     when S is a concentration (hasOnlySubstanceUnits false),
    dS/dt   = sum_r n_{S,r} v_r           when S is an amount (hasOnlySubstanceUnits true),

with n_{S,r} the net stoichiometry (products minus reactants) and |c| the compartment's size.
A species' symbol in any formula means its concentration or amount accordingly, and its initial
value comes from its initial assignment, else initialConcentration or initialAmount (converted
with |c|). Boundary and constant species keep their initial value unless a rule sets them.

Parameters and compartments become model parameters; local (kinetic-law) parameters become
global ones named ``<reaction>_<parameter>``. Assignment rules, initial assignments of constant
quantities, function definitions and references to a reaction's id (its rate) are substituted
into the formulas; rate rules make their variable a state. The SBML id ``t`` is renamed ``t_``
because ``t`` is time in biotwin.

Events, algebraic rules, delays, fast reactions, conversion factors, variable stoichiometry and
non-constant compartments are not supported: reading a model with one raises
:class:`~biotwin.errors.ModelError` naming the feature and the SBML id.

:func:`write_sbml` writes a :class:`~biotwin.model.Model` as SBML Level 3 Version 2 that this
reader, libRoadRunner and AMICI read back to the same ODE system (see its docstring for the
conventions).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sympy

from biotwin.errors import ModelError
from biotwin.io.files import atomic_write_text
from biotwin.model import TIME, Model, Parameter

AVOGADRO = 6.02214076e23


@dataclass(frozen=True, eq=False)
class SbmlModel:
    """An SBML model read into biotwin's terms.

    ``model`` is the ODE model. ``symbols`` maps every SBML id of a species, parameter or
    compartment to the name it has in biotwin. ``expressions`` gives, for every such id that is
    not a state or a model parameter (a rule variable, a quantity fixed by an initial assignment,
    a parameter no equation uses), its value as an expression of states, parameters and time;
    PEtab observables use them. ``species`` lists the species ids.
    """

    model: Model
    symbols: Mapping[str, str]
    expressions: Mapping[str, sympy.Expr]
    species: tuple[str, ...]
    compartments: tuple[str, ...]

    def expression(self, sbml_id: str) -> sympy.Expr:
        """The value of an SBML id as an expression of states, model parameters and time."""
        if sbml_id in self.expressions:
            return self.expressions[sbml_id]
        if sbml_id in self.symbols:
            return sympy.Symbol(self.symbols[sbml_id])
        raise ModelError(f"'{sbml_id}' is not a species, parameter or compartment of the SBML model")


def read_sbml(source: str | Path) -> Model:
    """The ODE model of an SBML file (a path) or document (a string starting with ``<``)."""
    return import_sbml(source).model


def import_sbml(source: str | Path) -> SbmlModel:
    """Read an SBML file or document into an :class:`SbmlModel` (see the module docstring)."""
    import libsbml

    text = str(source)
    if isinstance(source, str) and text.lstrip().startswith("<"):
        document = libsbml.readSBMLFromString(text)
        where = "SBML document"
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelError(f"{path}: no such SBML file")
        document = libsbml.readSBMLFromFile(str(path))
        where = str(path)
    for i in range(document.getNumErrors()):
        error = document.getError(i)
        if error.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            message = " ".join(error.getMessage().split())
            raise ModelError(f"{where}: invalid SBML at line {error.getLine()}: {message}")
    sbml = document.getModel()
    if sbml is None:
        raise ModelError(f"{where}: the SBML document has no model")
    try:
        return _Reader(sbml).read()
    except ModelError as error:
        raise ModelError(f"{where}: {error}") from None


class _Reader:
    """One pass over an SBML model: checks, symbols, formulas, then the ODE system."""

    def __init__(self, sbml: Any) -> None:
        self.sbml = sbml
        self.functions: dict[str, tuple[list[sympy.Symbol], Any]] = {}
        self.symbols: dict[str, str] = {}

    # ------------------------------------------------------------------ checks
    def _unsupported(self) -> None:
        import libsbml

        sbml = self.sbml
        if sbml.getNumEvents():
            event = sbml.getEvent(0)
            raise ModelError(f"events are not supported (event '{event.getId() or event.getName() or 0}')")
        for rule in sbml.getListOfRules():
            if rule.isAlgebraic():
                identifier = rule.getIdAttribute() or rule.getMetaId()
                if identifier:
                    raise ModelError(f"algebraic rules are not supported (algebraic rule '{identifier}')")
                formula = libsbml.formulaToL3String(rule.getMath()) if rule.isSetMath() else ""
                raise ModelError(f"algebraic rules are not supported (algebraic rule with formula '{formula}')")
        if sbml.isSetConversionFactor():
            raise ModelError(f"conversion factors are not supported (model conversionFactor '{sbml.getConversionFactor()}')")
        for species in sbml.getListOfSpecies():
            if species.isSetConversionFactor():
                raise ModelError(f"conversion factors are not supported (species '{species.getId()}')")
        for reaction in sbml.getListOfReactions():
            if reaction.isSetFast() and reaction.getFast():
                raise ModelError(f"fast reactions are not supported (reaction '{reaction.getId()}')")
            if not reaction.isSetKineticLaw() or not reaction.getKineticLaw().isSetMath():
                raise ModelError(f"reaction '{reaction.getId()}' has no kinetic law; give it one")
            for reference in (*reaction.getListOfReactants(), *reaction.getListOfProducts()):
                if reference.isSetStoichiometryMath() or (reference.getLevel() >= 3 and not reference.getConstant()
                                                          and reference.isSetId()):
                    raise ModelError(
                        f"variable stoichiometry is not supported (species '{reference.getSpecies()}' in reaction "
                        f"'{reaction.getId()}')"
                    )
        for compartment in sbml.getListOfCompartments():
            cid = compartment.getId()
            if sbml.getRule(cid) is not None or not compartment.getConstant():
                raise ModelError(f"compartments whose size changes are not supported (compartment '{cid}')")

    # ------------------------------------------------------------------ formulas
    def _name(self, sbml_id: str) -> str:
        return self.symbols.get(sbml_id, sbml_id)

    def formula(self, node: Any, owner: str, local: Mapping[str, str] | None = None) -> sympy.Expr:
        """A libsbml AST as a SymPy expression; ``owner`` names the element it belongs to, for messages."""
        if node is None:
            raise ModelError(f"'{owner}' has no formula")
        return sympy.sympify(self._convert(node, owner, local or {}, {}))

    def _convert(self, node: Any, owner: str, local: Mapping[str, str], bound: Mapping[str, Any]) -> Any:
        import libsbml as L

        kind = node.getType()
        children = [self._convert(node.getChild(i), owner, local, bound) for i in range(node.getNumChildren())] \
            if kind not in (L.AST_LAMBDA,) else []
        if kind == L.AST_INTEGER:
            return sympy.Integer(node.getInteger())
        if kind in (L.AST_REAL, L.AST_REAL_E, L.AST_RATIONAL):
            value = node.getReal()
            if math.isnan(value) or math.isinf(value):
                raise ModelError(f"a non-finite number appears in the formula of '{owner}'")
            return sympy.Float(value)
        if kind == L.AST_NAME:
            name = node.getName()
            if name in bound:
                return bound[name]
            if name in local:
                return sympy.Symbol(local[name])
            return sympy.Symbol(self._name(name))
        if kind == L.AST_NAME_TIME:
            return TIME
        if kind == L.AST_NAME_AVOGADRO:
            return sympy.Float(AVOGADRO)
        if kind == L.AST_CONSTANT_E:
            return sympy.E
        if kind == L.AST_CONSTANT_PI:
            return sympy.pi
        if kind == L.AST_CONSTANT_TRUE:
            return sympy.true
        if kind == L.AST_CONSTANT_FALSE:
            return sympy.false
        if kind == L.AST_PLUS:
            return sympy.Add(*children) if children else sympy.Integer(0)
        if kind == L.AST_MINUS:
            return -children[0] if len(children) == 1 else children[0] - children[1]
        if kind == L.AST_TIMES:
            return sympy.Mul(*children) if children else sympy.Integer(1)
        if kind == L.AST_DIVIDE:
            return children[0] / children[1]
        if kind in (L.AST_POWER, L.AST_FUNCTION_POWER):
            return children[0] ** children[1]
        if kind == L.AST_FUNCTION_ROOT:
            return sympy.sqrt(children[0]) if len(children) == 1 else children[1] ** (1 / children[0])
        if kind == L.AST_FUNCTION_LOG:
            return sympy.log(children[0], 10) if len(children) == 1 else sympy.log(children[1], children[0])
        if kind == L.AST_FUNCTION_PIECEWISE:
            pieces = [(children[i], children[i + 1]) for i in range(0, len(children) - 1, 2)]
            if len(children) % 2:
                pieces.append((children[-1], sympy.true))
            return sympy.Piecewise(*pieces)
        if kind == L.AST_FUNCTION:
            return self._call(node.getName(), children, owner)
        if kind in _SIMPLE:
            return _SIMPLE[kind](*children)
        if kind in _RELATIONS:
            return _RELATIONS[kind](*children)
        if kind in _LOGICAL:
            return _LOGICAL[kind](*children)
        if kind == L.AST_FUNCTION_DELAY:
            raise ModelError(f"delays are not supported (delay in the formula of '{owner}')")
        name = node.getName() or L.formulaToL3String(node)
        raise ModelError(f"the function '{name}' is not supported (in the formula of '{owner}')")

    def _call(self, name: str, arguments: list[Any], owner: str) -> Any:
        if name not in self.functions:
            raise ModelError(f"'{owner}' calls '{name}', which is not a function definition of the model")
        parameters, body = self.functions[name]
        if len(parameters) != len(arguments):
            raise ModelError(f"'{owner}' calls '{name}' with {len(arguments)} arguments; it takes {len(parameters)}")
        return self._convert(body, f"function '{name}'", {}, dict(zip(parameters, arguments)))

    # ------------------------------------------------------------------ the model
    def read(self) -> SbmlModel:
        sbml = self.sbml
        self._unsupported()
        for definition in sbml.getListOfFunctionDefinitions():
            lam = definition.getMath()
            if lam is None or lam.getNumChildren() == 0:
                raise ModelError(f"function definition '{definition.getId()}' has no formula")
            arguments = [lam.getChild(i).getName() for i in range(lam.getNumChildren() - 1)]
            self.functions[definition.getId()] = (arguments, lam.getChild(lam.getNumChildren() - 1))

        species = list(sbml.getListOfSpecies())
        parameters = list(sbml.getListOfParameters())
        compartments = list(sbml.getListOfCompartments())
        reactions = list(sbml.getListOfReactions())
        taken = {x.getId() for x in (*species, *parameters, *compartments, *reactions)}
        for sbml_id in taken:
            self.symbols[sbml_id] = sbml_id + "_" if sbml_id == "t" else sbml_id
        # Local parameters become global ones, renamed apart from every other id.
        local_names: dict[str, dict[str, str]] = {}
        local_values: dict[str, float] = {}
        for reaction in reactions:
            law = reaction.getKineticLaw()
            locals_ = {}
            # Level 3 calls them local parameters; libsbml lists them under both names there.
            declared = law.getListOfLocalParameters() if law.getLevel() >= 3 else law.getListOfParameters()
            for p in declared:
                name = f"{reaction.getId()}_{p.getId()}"
                while name in taken or name in local_values or name == "t":
                    name += "_"
                locals_[p.getId()] = name
                local_values[name] = _value(p, f"local parameter '{p.getId()}' of reaction '{reaction.getId()}'")
            local_names[reaction.getId()] = locals_

        assignment_rules: dict[str, sympy.Expr] = {}
        rate_rules: dict[str, sympy.Expr] = {}
        for rule in sbml.getListOfRules():
            variable = rule.getVariable()
            if variable not in taken:
                raise ModelError(f"rule for '{variable}', which is not a species, parameter or compartment")
            expression = self.formula(rule.getMath(), f"rule for '{variable}'")
            (rate_rules if rule.isRate() else assignment_rules)[variable] = expression
        initial_assignments = {
            a.getSymbol(): self.formula(a.getMath(), f"initial assignment of '{a.getSymbol()}'")
            for a in sbml.getListOfInitialAssignments()
        }
        for symbol in initial_assignments:
            if symbol not in taken:
                raise ModelError(f"initial assignment to '{symbol}', which is not a species, parameter or compartment")

        rates = {r.getId(): self.formula(r.getKineticLaw().getMath(), f"reaction '{r.getId()}'", local_names[r.getId()])
                 for r in reactions}
        # Quantities that are formulas rather than symbols: rule variables, constants fixed by an
        # initial assignment, and reaction ids (their rates).
        constant_ids = {p.getId() for p in parameters} | {c.getId() for c in compartments} | {
            s.getId() for s in species if s.getConstant() or s.getBoundaryCondition()}
        substitutions: dict[sympy.Symbol, sympy.Expr] = {}
        for variable, expression in assignment_rules.items():
            substitutions[sympy.Symbol(self._name(variable))] = expression
        for symbol, expression in initial_assignments.items():
            if symbol in constant_ids and symbol not in rate_rules and symbol not in assignment_rules and \
                    symbol not in {s.getId() for s in species}:
                substitutions[sympy.Symbol(self._name(symbol))] = expression
        for reaction_id, expression in rates.items():
            substitutions[sympy.Symbol(self._name(reaction_id))] = expression
        expand = _Expander(substitutions)

        # States: species not set by an assignment rule, then variables of rate rules.
        size = {c.getId(): c for c in compartments}
        state_ids: list[str] = []
        rhs: dict[str, sympy.Expr] = {}
        initial: dict[str, sympy.Expr] = {}
        for s in species:
            sid = s.getId()
            if sid in assignment_rules:
                continue
            state_ids.append(sid)
            compartment = sympy.Symbol(self._name(s.getCompartment()))
            concentration = not s.getHasOnlySubstanceUnits() and size[s.getCompartment()].getSpatialDimensions() != 0
            if sid in rate_rules:
                rhs[sid] = rate_rules[sid]
            elif s.getBoundaryCondition() or s.getConstant():
                rhs[sid] = sympy.Integer(0)
            else:
                flux = sympy.Integer(0)
                for reaction in reactions:
                    n = sum(_stoichiometry(ref) for ref in reaction.getListOfProducts() if ref.getSpecies() == sid) - \
                        sum(_stoichiometry(ref) for ref in reaction.getListOfReactants() if ref.getSpecies() == sid)
                    if n:
                        flux += _number(n) * sympy.Symbol(self._name(reaction.getId()))
                rhs[sid] = flux / compartment if concentration else flux
            if sid in initial_assignments:
                initial[sid] = initial_assignments[sid]
            elif s.isSetInitialConcentration() and not math.isnan(s.getInitialConcentration()):
                value = sympy.Float(s.getInitialConcentration())
                initial[sid] = value if concentration else value * compartment
            elif s.isSetInitialAmount() and not math.isnan(s.getInitialAmount()):
                value = sympy.Float(s.getInitialAmount())
                initial[sid] = value / compartment if concentration else value
            else:
                raise ModelError(f"species '{sid}' has no initial amount, concentration or initial assignment; give it one")
        for variable, expression in rate_rules.items():
            if variable in state_ids:
                continue
            state_ids.append(variable)
            rhs[variable] = expression
            if variable in initial_assignments:
                initial[variable] = initial_assignments[variable]
            else:
                element = next(p for p in parameters if p.getId() == variable)
                initial[variable] = sympy.Float(_value(element, f"parameter '{variable}'"))

        state_names = [self._name(s) for s in state_ids]
        state_symbols = {sympy.Symbol(n) for n in state_names}
        rhs_expanded = [expand(rhs[s], f"species '{s}'") for s in state_ids]
        # Initial values may use rule variables (at t = 0) and other states' initial values.
        initial_values: dict[sympy.Symbol, sympy.Expr] = {}
        for sid in state_ids:
            initial_values[sympy.Symbol(self._name(sid))] = expand(initial[sid], f"initial value of '{sid}'").subs(TIME, 0)
        initial_expanded = _resolve_initial(initial_values, state_symbols)

        # Model parameters: every remaining symbol, with its SBML value.
        values: dict[str, float] = dict(local_values)
        for element in (*parameters, *compartments):
            if element.getId() in state_ids or sympy.Symbol(self._name(element.getId())) in substitutions:
                continue
            kind = "compartment" if element in compartments else "parameter"
            values[self._name(element.getId())] = _value(element, f"{kind} '{element.getId()}'", kind == "compartment")
        used: set[str] = set()
        for expression in (*rhs_expanded, *initial_expanded.values()):
            used |= {s.name for s in expression.free_symbols}
        unknown = sorted(used - set(values) - set(state_names) - {TIME.name})
        if unknown:
            raise ModelError(f"the formulas use '{unknown[0]}', which the model does not define")
        model_parameters = tuple(Parameter(n, v) for n, v in values.items() if n in used)
        model = Model(
            states=tuple(state_names),
            rhs=tuple(rhs_expanded),
            parameters=model_parameters,
            initial={n: initial_expanded[sympy.Symbol(n)] for n in state_names},
            name=sbml.getId() or sbml.getName() or None,
        )
        expressions: dict[str, sympy.Expr] = {}
        for sbml_id, name in self.symbols.items():
            symbol = sympy.Symbol(name)
            if symbol in substitutions and sbml_id not in rates:
                expressions[sbml_id] = expand(symbol, f"'{sbml_id}'")
            elif name in values and name not in model.parameter_names:
                expressions[sbml_id] = sympy.Float(values[name])
        return SbmlModel(
            model=model,
            symbols=MappingProxyType({k: v for k, v in self.symbols.items() if k not in rates}),
            expressions=MappingProxyType(expressions),
            species=tuple(s.getId() for s in species),
            compartments=tuple(c.getId() for c in compartments),
        )


class _Expander:
    """Substitutes rule variables, fixed quantities and reaction rates until none is left."""

    def __init__(self, substitutions: Mapping[sympy.Symbol, sympy.Expr]) -> None:
        self.substitutions = dict(substitutions)

    def __call__(self, expression: sympy.Expr, owner: str) -> sympy.Expr:
        for _ in range(len(self.substitutions) + 1):
            if not (expression.free_symbols & self.substitutions.keys()):
                return expression
            expression = expression.xreplace(self.substitutions)
        cycle = sorted(s.name for s in expression.free_symbols & self.substitutions.keys())
        raise ModelError(f"the rules that define {', '.join(repr(c) for c in cycle)} refer to each other in a cycle ({owner})")


def _resolve_initial(values: dict[sympy.Symbol, sympy.Expr], states: set[sympy.Symbol]) -> dict[sympy.Symbol, sympy.Expr]:
    """Initial values in terms of parameters only: other states' initial values substituted."""
    resolved = dict(values)
    for _ in range(len(values) + 1):
        pending = {k: v for k, v in resolved.items() if v.free_symbols & states}
        if not pending:
            return resolved
        resolved = {k: v.xreplace(resolved) if k in pending else v for k, v in resolved.items()}
    cycle = sorted(k.name for k, v in resolved.items() if v.free_symbols & states)
    raise ModelError(f"the initial values of {', '.join(repr(c) for c in cycle)} refer to each other in a cycle")


def _stoichiometry(reference: Any) -> float:
    value = reference.getStoichiometry()
    if reference.getLevel() >= 3 and not reference.isSetStoichiometry():
        return 1.0
    return 1.0 if math.isnan(value) else float(value)


def _number(value: float) -> sympy.Expr:
    return sympy.Integer(int(value)) if float(value).is_integer() else sympy.Float(value)


def _value(element: Any, what: str, compartment: bool = False) -> float:
    value = element.getSize() if compartment else element.getValue()
    set_ = element.isSetSize() if compartment else element.isSetValue()
    if not set_ or math.isnan(value):
        if compartment:
            return 1.0  # SBML leaves an unsized compartment's size to the tool; 1 is the usual choice
        raise ModelError(f"{what} has no value; give it a value or an initial assignment")
    if not math.isfinite(value):
        raise ModelError(f"{what} has the non-finite value {value}")
    return float(value)


def _table(names: dict[str, Any]) -> dict[int, Any]:
    import libsbml

    return {getattr(libsbml, key): function for key, function in names.items() if hasattr(libsbml, key)}


_SIMPLE = _table({
    "AST_FUNCTION_ABS": sympy.Abs, "AST_FUNCTION_EXP": sympy.exp, "AST_FUNCTION_LN": sympy.log,
    "AST_FUNCTION_FLOOR": sympy.floor, "AST_FUNCTION_CEILING": sympy.ceiling,
    "AST_FUNCTION_SIN": sympy.sin, "AST_FUNCTION_COS": sympy.cos, "AST_FUNCTION_TAN": sympy.tan,
    "AST_FUNCTION_SEC": sympy.sec, "AST_FUNCTION_CSC": sympy.csc, "AST_FUNCTION_COT": sympy.cot,
    "AST_FUNCTION_SINH": sympy.sinh, "AST_FUNCTION_COSH": sympy.cosh, "AST_FUNCTION_TANH": sympy.tanh,
    "AST_FUNCTION_ARCSIN": sympy.asin, "AST_FUNCTION_ARCCOS": sympy.acos, "AST_FUNCTION_ARCTAN": sympy.atan,
    "AST_FUNCTION_ARCSINH": sympy.asinh, "AST_FUNCTION_ARCCOSH": sympy.acosh, "AST_FUNCTION_ARCTANH": sympy.atanh,
    "AST_FUNCTION_ARCCOT": sympy.acot, "AST_FUNCTION_ARCSEC": sympy.asec, "AST_FUNCTION_ARCCSC": sympy.acsc,
    "AST_FUNCTION_COTH": sympy.coth, "AST_FUNCTION_SECH": sympy.sech, "AST_FUNCTION_CSCH": sympy.csch,
    "AST_FUNCTION_ARCCOTH": sympy.acoth, "AST_FUNCTION_ARCSECH": sympy.asech, "AST_FUNCTION_ARCCSCH": sympy.acsch,
    "AST_FUNCTION_MAX": sympy.Max, "AST_FUNCTION_MIN": sympy.Min,
})
_RELATIONS = _table({
    "AST_RELATIONAL_EQ": sympy.Eq, "AST_RELATIONAL_NEQ": sympy.Ne, "AST_RELATIONAL_GT": sympy.StrictGreaterThan,
    "AST_RELATIONAL_LT": sympy.StrictLessThan, "AST_RELATIONAL_GEQ": sympy.GreaterThan,
    "AST_RELATIONAL_LEQ": sympy.LessThan,
})
_LOGICAL = _table({
    "AST_LOGICAL_AND": sympy.And, "AST_LOGICAL_OR": sympy.Or, "AST_LOGICAL_NOT": sympy.Not, "AST_LOGICAL_XOR": sympy.Xor,
})


# ---------------------------------------------------------------------- writing
#: The id of the one compartment :func:`write_sbml` writes (renamed apart from the model's names).
COMPARTMENT = "compartment"


def write_sbml(
    model: Model,
    path: str | Path | None = None,
    *,
    parameters: Mapping[str, float] | None = None,
    initial: Mapping[str, float] | None = None,
    observables: bool = True,
) -> str:
    """The model as an SBML Level 3 Version 2 document; also written to ``path`` (atomically) when given.

    The document holds the ODE system dx/dt = f(x, theta, u, t) as SBML writes it without reactions:

    * one compartment ``compartment`` of size 1;
    * each state x_i a species in amounts (``hasOnlySubstanceUnits``) whose rate rule is
      dx_i/dt = f_i, so that its symbol in any formula means x_i itself;
    * each parameter theta_j a constant global parameter at its value from ``parameters``
      (fitted values, by name) or else the model's default;
    * each input u_k a constant global parameter at its value in ``parameters``, else 0: the level
      u_k holds for the whole simulation (a PEtab condition may set it);
    * each initial value from ``initial`` (a number per state), else the model's initial
      expression: a number becomes the species' ``initialAmount``, an expression of parameters an
      ``initialAssignment``; a state with neither raises :class:`ModelError`;
    * with ``observables``, each observable y = g(x, theta) a non-constant parameter named after the
      observable whose assignment rule is g (an observable that is a state of the same name is
      that species and needs none).

    Formulas are MathML: powers, exp/ln, the trigonometric and hyperbolic functions, abs, min,
    max, floor, ceiling, Piecewise with relations and logic, ``t`` as SBML's time; Heaviside and
    sign become piecewise expressions with the values SymPy gives them (H(0) = 1/2, sign(0) = 0).
    Every number is written in full precision (Python's ``repr``), so reading the document back
    with :func:`read_sbml` gives the same parameter values and right-hand sides to the last bit;
    bounds, scales and observables are not part of SBML's ODE semantics and are not read back.
    The document passes libsbml's consistency checks without errors (it declares no units, so
    the unit checks warn).
    """
    import libsbml

    values, input_values = _written_values(model, parameters)
    initial_values = _written_initial(model, initial)
    taken = {*model.states, *model.parameter_names, *model.inputs}
    written_observables = []
    if observables:
        for observable in model.observables:
            if observable.name in model.states and observable.expr == sympy.Symbol(observable.name):
                continue
            if observable.name in taken:
                raise ModelError(
                    f"observable '{observable.name}' has the name of a state, parameter or input, so it cannot be an SBML "
                    "parameter of its own; rename the observable or write the model with observables=False"
                )
            taken.add(observable.name)
            written_observables.append(observable)
    writer = _Writer(taken)
    compartment_id = writer.fresh(COMPARTMENT)

    document = libsbml.SBMLDocument(3, 2)
    sbml = document.createModel()
    if model.name:
        identifier = re.sub(r"\W", "_", model.name)
        sbml.setId(identifier if re.match(r"[A-Za-z_]", identifier) else f"model_{identifier}")
        sbml.setName(model.name)
    compartment = sbml.createCompartment()
    compartment.setId(compartment_id), compartment.setSize(1.0), compartment.setConstant(True)
    compartment.setSpatialDimensions(3.0)
    for state, rhs in zip(model.states, model.rhs):
        species = sbml.createSpecies()
        species.setId(state), species.setCompartment(compartment_id), species.setHasOnlySubstanceUnits(True)
        species.setBoundaryCondition(False), species.setConstant(False)
        start = initial_values[state]
        if start.is_number:
            writer.attribute(species, "species", "initialAmount", float(start))
        else:
            assignment = sbml.createInitialAssignment()
            assignment.setSymbol(state), assignment.setMath(writer.math(start, f"initial value of '{state}'"))
        rule = sbml.createRateRule()
        rule.setVariable(state), rule.setMath(writer.math(rhs, f"d{state}/dt"))
    for name, value in (*values.items(), *input_values.items()):
        parameter = sbml.createParameter()
        parameter.setId(name), parameter.setConstant(True)
        writer.attribute(parameter, "parameter", "value", value)
    for observable in written_observables:
        parameter = sbml.createParameter()
        parameter.setId(observable.name), parameter.setConstant(False)
        rule = sbml.createAssignmentRule()
        rule.setVariable(observable.name), rule.setMath(writer.math(observable.expr, f"observable '{observable.name}'"))
    text = writer.text(document)
    if path is not None:
        atomic_write_text(path, text)
    return text


def as_piecewise(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with Heaviside and sign written as piecewise functions, which SBML and PEtab know.

    H(x) = 0 for x < 0, H0 at x = 0 (SymPy's default 1/2) and 1 for x > 0; sign(x) = -1, 0, 1.
    """
    def heaviside(x: sympy.Expr, *at_zero: sympy.Expr) -> sympy.Expr:
        return sympy.Piecewise((0, x < 0), (at_zero[0] if at_zero else sympy.S.Half, sympy.Eq(x, 0)), (1, True))

    def sign(x: sympy.Expr) -> sympy.Expr:
        return sympy.Piecewise((-1, x < 0), (1, x > 0), (0, True))

    return expr.replace(sympy.Heaviside, heaviside).replace(sympy.sign, sign)


def _written_values(model: Model, parameters: Mapping[str, float] | None) -> tuple[dict[str, float], dict[str, float]]:
    """Parameter values (defaults replaced by ``parameters``) and input levels (0 unless given)."""
    given = dict(parameters or {})
    known = (*model.parameter_names, *model.inputs)
    for key, value in given.items():
        if key not in known:
            raise ModelError(Model.unknown_message("parameter or input", key, known))
        if not math.isfinite(float(value)):
            raise ModelError(f"the value of '{key}' is {value}; SBML needs a finite number")
    values = {p.name: float(given.get(p.name, p.value)) for p in model.parameters}
    return values, {u: float(given.get(u, 0.0)) for u in model.inputs}


def _written_initial(model: Model, initial: Mapping[str, float] | None) -> dict[str, sympy.Expr]:
    """Each state's initial value: the number in ``initial``, else the model's initial expression."""
    given = dict(initial or {})
    for key, value in given.items():
        if key not in model.states:
            raise ModelError(Model.unknown_message("state", key, model.states))
        if not math.isfinite(float(value)):
            raise ModelError(f"the initial value of '{key}' is {value}; SBML needs a finite number")
    result = {}
    for state in model.states:
        if state in given:
            result[state] = sympy.Float(float(given[state]))
        elif state in model.initial:
            result[state] = model.initial[state]
        else:
            raise ModelError(
                f"state '{state}' has no initial value; give it (initial={{'{state}': ...}}) or add '{state}(0) = ...' "
                "to the model"
            )
    return result


class _Writer:
    """SymPy expressions as libsbml ASTs, and every number written in full precision.

    libsbml writes doubles with 15 significant digits. So each real number of a formula enters
    the AST as a placeholder name and each real attribute is remembered; :meth:`text` replaces
    them in the written document by ``repr`` of the float, which reads back to the same double.
    """

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)
        self.numbers: dict[str, float] = {}
        self.attributes: list[tuple[str, str, str, float]] = []
        self.prefix = "biotwin_number_"
        while any(name.startswith(self.prefix) for name in self.taken):
            self.prefix = "_" + self.prefix

    def fresh(self, name: str) -> str:
        """``name``, with underscores appended until no model symbol has it."""
        while name in self.taken or name.startswith(self.prefix):
            name += "_"
        self.taken.add(name)
        return name

    def attribute(self, element: Any, tag: str, attribute: str, value: float) -> None:
        getattr(element, "set" + attribute[0].upper() + attribute[1:])(value)
        self.attributes.append((tag, element.getId(), attribute, value))

    def number(self, value: float) -> Any:
        import libsbml

        name = f"{self.prefix}{len(self.numbers)}"
        self.numbers[name] = float(value)
        node = libsbml.ASTNode(libsbml.AST_NAME)
        node.setName(name)
        return node

    def math(self, expr: Any, owner: str) -> Any:
        """The libsbml AST of a SymPy expression; ``owner`` names what it is, for messages."""
        import libsbml as L

        def node(kind: int, *children: Any) -> Any:
            result = L.ASTNode(kind)
            for child in children:
                result.addChild(child)
            return result

        def convert(e: Any) -> Any:
            if e == TIME:
                result = L.ASTNode(L.AST_NAME_TIME)
                result.setName("time")
                return result
            if isinstance(e, sympy.Symbol):
                result = L.ASTNode(L.AST_NAME)
                result.setName(e.name)
                return result
            if isinstance(e, sympy.Integer):
                if abs(int(e)) < 2**62:
                    result = L.ASTNode(L.AST_INTEGER)
                    result.setValue(int(e))
                    return result
                return self.number(float(e))
            if isinstance(e, sympy.Rational):
                return node(L.AST_DIVIDE, convert(sympy.Integer(e.p)), convert(sympy.Integer(e.q)))
            if e is sympy.pi:
                return L.ASTNode(L.AST_CONSTANT_PI)
            if e is sympy.E:
                return L.ASTNode(L.AST_CONSTANT_E)
            if e is sympy.true or e is sympy.false:
                return L.ASTNode(L.AST_CONSTANT_TRUE if e is sympy.true else L.AST_CONSTANT_FALSE)
            if e.is_Number or e.is_NumberSymbol:
                value = float(e)
                if not math.isfinite(value):
                    raise ModelError(f"the formula of {owner} contains the non-finite number {e}; SBML cannot hold it")
                return self.number(value)
            if isinstance(e, sympy.Add):
                # a - b rather than a + (-1)*b: each negative term is subtracted.
                first, *rest = sorted(e.args, key=lambda a: a.could_extract_minus_sign())
                result = convert(first)
                for term in rest:
                    negative = term.could_extract_minus_sign()
                    result = node(L.AST_MINUS if negative else L.AST_PLUS, result, convert(-term if negative else term))
                return result
            if isinstance(e, sympy.Mul):
                return product(e)
            if isinstance(e, sympy.Pow):
                return node(L.AST_POWER, convert(e.base), convert(e.exp))
            if isinstance(e, sympy.Piecewise):
                children = []
                for value, condition in e.args:
                    children.append(convert(value))
                    if condition is not sympy.true:
                        children.append(convert(condition))
                return node(L.AST_FUNCTION_PIECEWISE, *children)
            kind = _AST_OF.get(e.func)
            if kind is None:
                raise ModelError(f"the formula of {owner} uses '{e.func.__name__}', which cannot be written in SBML")
            return node(kind, *(convert(a) for a in e.args))

        def product(e: Any) -> Any:
            # a*b/(c*d) as a division, -x as a negation: the MathML reads as the formula was written.
            numerator, denominator = [], []
            for factor in e.args:
                if isinstance(factor, sympy.Rational) and not isinstance(factor, sympy.Integer):
                    numerator += [sympy.Integer(factor.p)] if factor.p != 1 else []
                    denominator.append(sympy.Integer(factor.q))
                elif isinstance(factor, sympy.Pow) and factor.exp.is_number and factor.exp.is_negative:
                    denominator.append(factor.base ** -factor.exp)
                else:
                    numerator.append(factor)
            negative = bool(numerator) and numerator[0] == -1
            if negative:
                numerator = numerator[1:]
            top = node(L.AST_TIMES, *(convert(f) for f in numerator)) if len(numerator) > 1 else \
                convert(numerator[0] if numerator else sympy.Integer(1))
            if denominator:
                bottom = node(L.AST_TIMES, *(convert(f) for f in denominator)) if len(denominator) > 1 else \
                    convert(denominator[0])
                top = node(L.AST_DIVIDE, top, bottom)
            return node(L.AST_MINUS, top) if negative else top

        return convert(as_piecewise(sympy.sympify(expr)))

    def text(self, document: Any) -> str:
        """The written document with every number in full precision, checked by libsbml."""
        import libsbml

        text = libsbml.writeSBMLToString(document)
        for tag, identifier, attribute, value in self.attributes:
            pattern = rf'(<{tag}\b[^>]*?\bid="{re.escape(identifier)}"[^>]*?\b{attribute}=")[^"]*(")'
            text, count = re.subn(pattern, lambda m, v=value: m.group(1) + repr(v) + m.group(2), text, count=1)
            assert count == 1, f"no {attribute} attribute for {tag} '{identifier}' in the written SBML"
        text = re.sub(
            rf"<ci>\s*({re.escape(self.prefix)}\d+)\s*</ci>",
            lambda m: f"<cn> {self.numbers[m.group(1)]!r} </cn>",
            text,
        )
        check = libsbml.readSBMLFromString(text)
        check.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, False)
        check.checkConsistency()
        for i in range(check.getNumErrors()):
            error = check.getError(i)
            if error.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
                raise ModelError(f"the model does not make valid SBML: {' '.join(error.getMessage().split())}")
        return text


_AST_OF: Mapping[Any, int] = MappingProxyType({
    **{function: kind for kind, function in _SIMPLE.items()},
    **{relation: kind for kind, relation in _RELATIONS.items()},
    **{logical: kind for kind, logical in _LOGICAL.items()},
})
