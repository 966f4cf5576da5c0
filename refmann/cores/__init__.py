"""One time step of each model: controller + memory access, forward and backward.

A core is a small object holding the sizes; its ``step_forward(params, x_t, state)`` returns
``(y_t, state_t, cache_t)`` and its ``step_backward(params, dy_t, dstate_t, cache_t, grads)``
returns ``dstate_{t-1}`` and adds the step's parameter gradients into ``grads``. Models in
:mod:`refmann.models` unroll a core over time (BPTT).
"""

from .dam import DAMCore, DAMState
from .lstm import LSTMCore, LSTMState
from .ntm import NTMCore, NTMState

__all__ = ["DAMCore", "DAMState", "LSTMCore", "LSTMState", "NTMCore", "NTMState"]
