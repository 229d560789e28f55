"""Real PostgreSQL and MariaDB servers for the integration tests (a source and a target, as two hosts would be), and
the fixture app on both engines."""

from __future__ import annotations

import pytest

from ansible_collections.appvault.backup.plugins.module_utils._appdef import resolve
from harness.pg import PgServer
from harness.roles import App

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


@pytest.fixture
def two_engine_app(tmp_path, pg_source, mysql_source):
    """The fixture app (harness.roles.App) on PostgreSQL database ``two_pg`` plus a MariaDB database ``two_my`` with
    id ``shop``: (app, resolved definition). Both databases are dropped afterwards."""
    app = App(tmp_path, 'postgresql', pg_source, 'two_pg')
    mysql_source.load_fixture('two_my')
    definition = app.definition()
    definition['databases'].append(dict(id='shop', engine='mariadb', name='two_my', login_host='127.0.0.1',
                                        login_port=mysql_source.port, login_user='root', login_password=mysql_source.password))
    yield app, resolve(definition)
    pg_source.drop_db('two_pg')
    mysql_source.drop_db('two_my')
