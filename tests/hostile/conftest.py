"""The hostile suite's fixtures; the fault generators and checks are in faults.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from faults import png_bomb


@pytest.fixture(scope="session")
def bomb(tmp_path_factory) -> Path:
    """The decompression bomb of the hostile run: 875 KB of PNG declaring 30000 x 30000 pixels."""
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")
