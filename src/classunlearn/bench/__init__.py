"""The whole study as one command: plan, cached/resumable runner, executors, report."""

import sys

from classunlearn import _callable_module

_callable_module(sys.modules[__name__], "bench")  # cu.bench(...): the API's
