"""JAX set-up shared by every numerical module: double precision, imported lazily.

Importing this module switches JAX to float64 before any array is created; ODE solves of
biological systems span many orders of magnitude and single precision loses the small states.

:func:`quick_jit` compiles a program that is compiled afresh for every problem and whose compile
time is a large share of its use: a calibration's objective and its derivatives (the
Minimiser's), and the residuals and Jacobian of a model on trajectories (``TrajectoryProblem``,
one per discovery). It is not used where the compiled program then runs long enough for its
speed to matter more: measured on 2 cores, the Simulator's single Lotka-Volterra solve took
584 us with the options against 365 us without (``benchmarks/simulate_vs_scipy.py``), and the
NUTS loop of ``biotwin infer`` on the lynx-hare twin drew 105 ESS/s against 120. Only a
top-level ``jax.jit`` takes compiler options, so functions that other programs call inside
their own trace (an objective's ``nll``, ``least_squares``) keep plain ``jax.jit``.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

#: XLA CPU's classic loop emitters instead of its newer fusion emitters. Compiling a PEtab
#: problem's J, residuals and forward-sensitivity Jacobian (Rodas5, jax 0.10.2, 2 cores) took,
#: with these options against without: Boehm_JProteomeRes2014 2.20 s against 3.50 s, Crauste_
#: CellSystems2017 1.85 against 2.60, Elowitz_Nature2000 2.90 against 4.93, Perelson_Science1996
#: 1.33 against 2.15; one evaluation at the nominal parameters 3.63 ms against 4.35, 5.62
#: against 7.27, 38.1 against 35.4 and 2.26 against 2.14.
QUICK_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def _quick_compile_options() -> dict[str, Any] | None:
    """The options where this JAX runs on a CPU whose compiler knows them, else None."""
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1.0, compiler_options=QUICK_COMPILE_OPTIONS).lower(1.0).compile()
    except Exception:  # an older or newer XLA without the option: compile as usual
        return None
    return QUICK_COMPILE_OPTIONS


def quick_jit(function: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(function)``, compiled with :data:`QUICK_COMPILE_OPTIONS` where they apply."""
    options = _quick_compile_options()
    return jax.jit(function, compiler_options=options) if options else jax.jit(function)
