"""One torch thread for a whole test package: tiny models on shared cores run many times slower with
more. A package's conftest imports ``one_thread`` to get it (pytest registers the fixture there)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
