"""Real PostgreSQL servers for the integration tests: a source and a target, as two hosts would be."""

from __future__ import annotations

import pytest

from harness.pg import PgServer

FIXTURE_ROWS = 20000


@pytest.fixture(scope='session')
def pg_source(work_base):
    server = PgServer(work_base, 'source').start()
    server.load_fixture('appdb', rows=FIXTURE_ROWS)
    yield server
    server.stop()


@pytest.fixture(scope='session')
def pg_target(work_base):
    server = PgServer(work_base, 'target').start()
    yield server
    server.stop()


@pytest.fixture
def tmp_out(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    return out
