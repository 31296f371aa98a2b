"""MiniELM: the importable core of the platform.

Every stage (data, search, evaluation, training, distillation, RL, feedback, drift, storage,
config) is a plain function with typed inputs, callable from a test; the KFP components,
KServe servers and CLI are thin layers over it. No Kubernetes code lives here.
"""

__version__ = "0.1.0"
