"""The end-to-end demo (``minielm demo``): the application layer over the core, at toy scale.

:mod:`minielm.demo.runner` starts the embedded services and runs the steps in order; each
``*_step`` module holds one step. Toy budgets live in :mod:`minielm.presets`; production code
never imports this package.
"""

from minielm.demo.runner import DemoContext, DemoStep, default_steps, run_demo

__all__ = ["DemoContext", "DemoStep", "default_steps", "run_demo"]
