"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Make the checkout importable as ansible_collections.appvault.backup (the Makefile's link).
sys.path.insert(0, str(REPO / 'build' / 'collections'))


@pytest.fixture(scope='session')
def work_base():
    """A base directory the throwaway servers' OS user can enter."""
    base = tempfile.mkdtemp(prefix='appvault-tests-')
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)
