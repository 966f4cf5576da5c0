"""One time step of each recurrent model, forward and backward, over one :class:`Core` protocol.

A core holds its sizes; ``step_forward(params, x_t, state)`` returns ``Step(y_t, state_t, cache_t,
trace_t)`` and ``step_backward(params, dy_t, dstate_t, cache_t, grads)`` returns ``dstate_{t-1}``,
adding the step's parameter gradients into a :class:`refmann.grads.Grads` sink. The controller →
interface → output sandwich (:mod:`refmann.cores.controller`) is written once and shared.
Models in :mod:`refmann.models` unroll a core over time (BPTT).
"""

from .controller import Controller, Field, HeadGroup, Interface, InterfaceLayout, Output, scalar
from .dam import DAMCache, DAMCore, DAMState, DAMTrace
from .lstm import LSTMCache, LSTMCore, LSTMState
from .ntm import NTMCache, NTMCore, NTMState
from .protocol import Core, CoreBase, Step
from .sam import SAMCache, SAMCore, SAMState, SAMTrace

__all__ = [
    "Controller",
    "Core",
    "CoreBase",
    "DAMCache",
    "DAMCore",
    "DAMState",
    "DAMTrace",
    "Field",
    "HeadGroup",
    "Interface",
    "InterfaceLayout",
    "LSTMCache",
    "LSTMCore",
    "LSTMState",
    "NTMCache",
    "NTMCore",
    "NTMState",
    "Output",
    "SAMCache",
    "SAMCore",
    "SAMState",
    "SAMTrace",
    "Step",
]
