"""Process-group defaults so one plain ``python`` process can run the DeepSpeed engine.

DeepSpeed falls back to MPI discovery (and fails without mpi4py) unless the torch launcher
variables are set; a launcher (``deepspeed``, ``torchrun``) sets them itself, so these are only
defaults.
"""

from __future__ import annotations

import os
import socket


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_process_group_env() -> list[str]:
    """Set MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK for a single process when unset.

    Returns the names it set, so the caller can drop MASTER_PORT again once the process group
    exists: left in the environment, it would make a child process (a kfp.local task) try to listen
    on this process's port.
    """
    defaults = {"MASTER_ADDR": "127.0.0.1", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    added = [key for key in (*defaults, "MASTER_PORT") if key not in os.environ]
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(_free_port())
    return added


def drop_env(names: list[str]) -> None:
    for name in names:
        os.environ.pop(name, None)


def skip_cpu_shared_memory_comm() -> None:
    """Keep DeepSpeed from JIT-building its shared-memory all-reduce op (~30 s, CPU only).

    The op only speeds up all-reduce between ranks on one host; gloo does the same job without it.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
