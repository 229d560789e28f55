"""Run one module through Ansible from a child process (argv-sampling tests): _run_module.py MODULE REPR_ARGS."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.common import run_module

result = run_module(sys.argv[1], ast.literal_eval(sys.argv[2]))
sys.exit(1 if result.get('failed') else 0)
