"""A run ended by SIGTERM still reaches the ``finally`` that stops the services it started."""

import os
import signal
import threading
import time

import pytest

from minielm.services import terminate_as_exit


def test_sigterm_inside_the_block_raises_system_exit_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    stopped = []
    with pytest.raises(SystemExit) as exited:
        with terminate_as_exit():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler interrupts the sleep
            finally:
                stopped.append(True)
    assert exited.value.code == 128 + signal.SIGTERM
    assert stopped == [True]
    assert signal.getsignal(signal.SIGTERM) is before


def test_outside_the_main_thread_the_block_changes_no_handler():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with terminate_as_exit():
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [before]
