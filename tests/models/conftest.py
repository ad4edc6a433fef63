import sys
from pathlib import Path

import pytest
import torch

# foreign_models.py (other packages' layouts) sits beside the tests
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These models are tiny: torch's thread pool costs more than it saves (10-50x slower
    backward passes on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
