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


# -- MySQL / MariaDB ------------------------------------------------------------------------------------
from harness.mysql import MariaDBServer

DEFINER_ACCOUNT = 'app_owner'


@pytest.fixture(scope='session')
def mysql_source(work_base):
    """A MariaDB server with the rich fixture in `appdb`; the fixture's DEFINER account exists here."""
    server = MariaDBServer(work_base, 'msource').start()
    server.sql("CREATE USER '%s'@'%%' IDENTIFIED BY 'owner-pw'; GRANT ALL ON *.* TO '%s'@'%%'" % (DEFINER_ACCOUNT, DEFINER_ACCOUNT))
    server.load_fixture('appdb')
    yield server
    server.stop()


@pytest.fixture(scope='session')
def mysql_target(work_base):
    """A second MariaDB server, as another host would be; the DEFINER account does NOT exist here."""
    server = MariaDBServer(work_base, 'mtarget').start()
    yield server
    server.stop()
