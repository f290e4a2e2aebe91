import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
