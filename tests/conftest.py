import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: on a shared, oversubscribed CPU, intra-op threads
    spin against each other and make training-heavy tests many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
