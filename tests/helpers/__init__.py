"""Plain helpers of the test suite, imported normally (`from tests.helpers.cli import run_pack`); state lives in the
fixtures of tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
