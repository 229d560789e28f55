"""PostgreSQL adapter: argv building and client selection (pure logic; behaviour is covered against real servers)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _inventory, _postgres
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError, SecretDir


def params(**extra):
    p = dict(_postgres.connection_argument_spec_defaults())
    p.update(name='app', login_host='db', login_user='u', login_password='p:w\\d', format='custom', compression='zstd',
             compression_level=None, jobs=1, schemas=None, exclude_schemas=None, exclude_tables=None, exclude_table_data=None,
             blobs=True, quote_all_identifiers=True)
    p.update(extra)
    return p


class FakeConn:
    server_major = 15
    where = 'db:5432'


@pytest.fixture
def clients(monkeypatch):
    versions = {'pg_dump': [17, 15], 'psql': [15], 'pg_restore': [15]}

    def fake(tool, bin_dir=None):
        return [{'path': '/pg%d/%s' % (v, tool), 'major': v, 'version': '%d.2' % v} for v in versions[tool]]
    monkeypatch.setattr(_postgres, 'client_candidates', fake)
    monkeypatch.setattr(_postgres, 'find_tool', lambda name, package=None: '/usr/bin/' + name)
    return versions


def test_password_goes_to_a_0600_passfile_not_argv_or_env():
    with SecretDir() as secrets:
        conn = _postgres.Connection(params(), secrets)
        assert 'p:w' not in repr(conn.env).replace(conn.env['PGPASSFILE'], '')
        with open(conn.env['PGPASSFILE']) as f:
            assert f.read() == '*:*:*:*:p\\:w\\\\d\n'
        import os
        assert oct(os.stat(conn.env['PGPASSFILE']).st_mode & 0o777) == '0o600'
        assert conn.env['PGPASSWORD'] == ''


def test_newest_client_is_chosen(clients):
    assert _postgres.find_client('pg_dump', 15)['major'] == 17


def test_too_old_client_names_both_versions(clients):
    with pytest.raises(AppvaultError) as err:
        _postgres.find_client('psql', 16, why='the server db:5432')
    assert err.value.msg.startswith('the server db:5432 is PostgreSQL 16, but the newest psql found is version 15.2')


def test_zstd_native_from_pg16_client(clients):
    tool, argv, pipe, warnings = _postgres.dump_plan(FakeConn(), params(), 2)
    assert tool['major'] == 17 and '--compress=zstd:3' in argv and pipe is None and not warnings


def test_zstd_piped_for_older_client(clients):
    clients['pg_dump'] = [15]
    tool, argv, pipe, warnings = _postgres.dump_plan(FakeConn(), params(compression_level=1), 2)
    assert '--compress=0' in argv and pipe == ['/usr/bin/zstd', '-q', '-T2', '-1', '-c']
    assert argv[:3] == ['/pg15/pg_dump', '--format=c', '--no-password']
    assert '--blobs' in argv and '--quote-all-identifiers' in argv


def test_directory_zstd_with_old_client_warns(clients):
    clients['pg_dump'] = [15]
    _tool, argv, pipe, warnings = _postgres.dump_plan(FakeConn(), params(format='directory', jobs=2), 2)
    assert pipe is None and '--compress=0' in argv and '--jobs=2' in argv and warnings


def test_jobs_need_directory(clients):
    with pytest.raises(AppvaultError, match='needs format: directory'):
        _postgres.dump_plan(FakeConn(), params(jobs=2), 2)


def test_filters_become_options(clients):
    options = params(schemas=['sub_a'], exclude_tables=['app.x'], exclude_table_data=['app.logs'], compression='gzip')
    _tool, argv, _pipe, _w = _postgres.dump_plan(FakeConn(), options, 2)
    assert {'--schema=sub_a', '--exclude-table=app.x', '--exclude-table-data=app.logs', '--compress=6'} <= set(argv)


def test_quoting_helpers():
    assert _postgres.sql_literal("O'Brien") == "'O''Brien'"
    assert _postgres.sql_ident('we"ird') == '"we""ird"'
    assert _postgres.conninfo_value("a'b\\c") == "'a\\'b\\\\c'"


def test_across_major_versions_views_compare_without_relation_qualifiers():
    """PostgreSQL 16 stopped qualifying columns in pg_get_viewdef where it need not (a 15 -> 17 migration)."""
    recorded = {'_server_version': '15.18', 'tables': {'app.users': {'kind': 'table', 'columns': ['id integer NOT NULL']}},
                'views': {'app.active_users': {'kind': 'view', 'definition':
                          " SELECT users.id,\n    app.project_count(users.id) AS projects\n   FROM app.users\n  WHERE users.status = 'a';"}}}
    restored = {'_server_version': '17.6', 'tables': recorded['tables'],
                'views': {'app.active_users': {'kind': 'view', 'definition':
                          " SELECT id,\n    app.project_count(id) AS projects\n   FROM app.users\n  WHERE status = 'a';"}}}
    expected, actual = _postgres.comparable(recorded, restored)
    assert _inventory.compare(expected, actual) == []
    # the same major version compares the text as it is
    same = dict(restored, _server_version='15.18')
    assert _inventory.compare(*_postgres.comparable(recorded, same)) != []


def test_postgresql_17_identity_on_partitions_counts_as_recorded_but_nothing_else_does():
    recorded = {'_server_version': '15.18', 'tables': {
        'app.m_2025': {'kind': 'table', 'columns': ['id bigint NOT NULL', 'v double precision']}}}
    restored = {'_server_version': '17.6', 'tables': {
        'app.m_2025': {'kind': 'table', 'columns': ['id bigint NOT NULL GENERATED ALWAYS AS IDENTITY', 'v double precision']}}}
    assert _inventory.compare(*_postgres.comparable(recorded, restored)) == []
    changed = {'_server_version': '17.6', 'tables': {
        'app.m_2025': {'kind': 'table', 'columns': ['id bigint GENERATED ALWAYS AS IDENTITY', 'v double precision']}}}
    assert _inventory.compare(*_postgres.comparable(recorded, changed)) != []


def test_checksum_sql_uses_the_row_hash_only_when_asked():
    plain = _postgres.checksum_sql(False)
    assert 'hash_record_extended' not in plain and 'md5(t::text)' in plain
    hashed = _postgres.checksum_sql(True)
    assert 'hash_record_extended' in hashed and 'md5(t::text)' in hashed and 'collisdeterministic' in hashed
    assert "'int8'::regtype::oid" in hashed and 'anyenum' not in hashed
    assert '%%' not in hashed and '%I.%I' in hashed  # formatted once: format() gets single % directives


def test_hashed_checksums_follows_the_recorded_inventory():
    assert _postgres.hashed_checksums({'checksums': {'public.a': 'h:3:12', 'public.b': '2:5'}})
    assert not _postgres.hashed_checksums({'checksums': {'public.b': '2:5'}})
    assert not _postgres.hashed_checksums({'rows': {'public.b': 2}})
    assert not _postgres.hashed_checksums(None)


class _InventoryConn:
    """What inventory() asks of a connection: the server's version and one query's output."""
    server_major = 15
    server_version = '15.8'

    def __init__(self, answer):
        self.answer = answer
        self.sql = None

    def query(self, sql, database=None):
        self.sql = sql
        return json.dumps(self.answer)


def test_checksum_rows_reads_both_forms():
    assert _inventory.checksum_rows('h:3:-12') == 3 and _inventory.checksum_rows('2:5') == 2
    assert _inventory.checksum_rows('h:0:0') == 0 and _inventory.checksum_rows('0:0') == 0


def test_inventory_with_checksums_counts_rows_from_them_in_one_pass():
    conn = _InventoryConn({'tables': {}, 'checksums': {'app.a': 'h:3:-12', 'app.b': '2:5'}})
    data = _postgres.inventory(conn, checksums=True)
    assert data['rows'] == {'app.a': 3, 'app.b': 2} and data['_server_version'] == '15.8'
    assert 'SELECT count(*) AS c' not in conn.sql and 'hash_record_extended' in conn.sql
    plain = _InventoryConn({'tables': {}, 'rows': {'app.a': 3}})
    assert _postgres.inventory(plain)['rows'] == {'app.a': 3}
    assert 'SELECT count(*) AS c FROM %I.%I' in plain.sql and "format('%s.%s'" in plain.sql and '%%' not in plain.sql
    assert 'checksums' not in plain.sql
