"""Gradient descent by an optax optimiser, many steps per compiled call.

For a loss L(w, *args) and an optimiser (Adam, clipped or scheduled), one step is

    (L, g) = (L(w), dL/dw),    (u, s') = update(g, s, w),    w' = w + u.

Dispatched from Python a step at a time, the optimiser's update is dozens of small operations
that cost as much as the gradient through an ODE solve; here ``count`` steps run in one
compiled loop, so a caller that wants a progress bar asks for a few dozen at a time, and one
that inspects every iterate asks for one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def compiled_descent(value_and_gradient: Callable[..., tuple[Any, Any]], optimiser: Any) -> Callable[..., tuple[Any, Any, Any]]:
    """``descend(w, s, count, *args) -> (w', s', value)``: ``count`` steps of ``optimiser`` from
    weights ``w`` and optimiser state ``s``, compiled once for any ``count``.

    ``value_and_gradient(w, *args)`` returns the loss (or any pytree with it, such as
    ``(loss, aux)`` from ``jax.value_and_grad(..., has_aux=True)``) and the gradient; ``value``
    is the last step's, taken at the weights that step started from. It should be jitted
    itself: its trace is then shared with any other call of it (a final evaluation).
    """
    import jax
    import jax.numpy as jnp
    import optax

    @jax.jit
    def descend(weights: Any, state: Any, count: Any, *args: Any) -> tuple[Any, Any, Any]:
        def one(_: Any, carry: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
            weights, state, _ = carry
            value, gradient = value_and_gradient(weights, *args)
            updates, state = optimiser.update(gradient, state, weights)
            return optax.apply_updates(weights, updates), state, value

        shapes = jax.eval_shape(value_and_gradient, weights, *args)[0]
        nothing = jax.tree.map(lambda shape: jnp.zeros(shape.shape, shape.dtype), shapes)
        return jax.lax.fori_loop(0, count, one, (weights, state, nothing))

    return descend
