"""postgresql_dump / postgresql_restore against real servers, run through ansible-playbook."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from harness.common import cached_bytes, run_module, run_module_sampling_argv, run_playbook
from harness.compare import assert_pg_identical, pg_inventory


def dump(server, dest, **extra):
    args = server.conn_args('appdb', dest=str(dest))
    args.update(extra)
    return run_module('postgresql_dump', args)


def restore(server, name, src, **extra):
    args = server.conn_args(name, src=str(src))
    args.update(extra)
    return run_module('postgresql_restore', args)


def test_fixture_inventory_is_rich(pg_source):
    """The inventory sees every kind of object the fixture holds, so 'identical' below means something."""
    inv = pg_inventory(pg_source, 'appdb')
    assert {'app', 'sub_a'} <= set(inv['schemas'])
    assert inv['rows']['app.users'] == 20000
    assert inv['rows']['app.measurements'] == 20000
    assert inv['rows']['sub_a.records'] == 10000
    assert inv['views']['app.project_stats']['kind'] == 'materialized'
    assert 'app.active_users' in inv['views'] and 'sub_a.recent' in inv['views']
    kinds = {r['kind'] for r in inv['routines'].values()}
    assert {'function', 'procedure'} <= kinds
    assert {'app.users.users_touch', 'app.projects.projects_audit'} <= set(inv['triggers'])
    assert inv['types']['app.status'] == {'kind': 'enum', 'labels': ['draft', 'active', 'archived']}
    assert inv['types']['app.email']['kind'] == 'domain'
    assert inv['sequences']['app.invoice_no']['cycle'] is True
    assert inv['sequences']['app.invoice_no']['last_value'] is not None
    assert 'app.users_email_lower' in inv['indexes'] and 'WHERE' in inv['indexes']['app.users_active']
    assert any('ON DELETE CASCADE' in d for d in inv['constraints'].values())
    assert any('gen_random_uuid()' in c for c in inv['tables']['app.users']['columns'])
    assert inv['large_objects'] == 1
    assert inv['checksums']['app.users'].startswith('20000:')
    assert inv['comments']['table app.users'] == 'ユーザー (users)'


def test_round_trip_identical(pg_source, pg_target, tmp_out):
    dest = tmp_out / 'appdb.pgc.zst'
    result = dump(pg_source, dest)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True
    assert result['compression'] == {'method': 'zstd', 'level': 3, 'how': 'pipe'}
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert result['artefact']['size'] == os.path.getsize(dest) > 0
    assert cached_bytes(dest) < result['artefact']['size'] // 8  # dropped from the page cache once on disk
    assert result['artefact']['sha256'] == subprocess.run(['sha256sum', str(dest)], capture_output=True, text=True,
                                                          check=True).stdout.split()[0]
    assert result['inventory']['rows']['app.users'] == 20000
    assert result['inventory']['sequences']['app.invoice_no']['last_value'] is not None  # quiet database: exact positions
    assert '_sequence_positions' not in result['inventory']
    assert not [p for p in os.listdir(tmp_out) if p.endswith('.partial')]

    pg_target.drop_db('roundtrip')
    restored = restore(pg_target, 'roundtrip', dest, create=True, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert restored['database_created'] is True
    assert restored['verified'] is True
    assert restored['source']['format'] == 'custom' and restored['source']['compression'] == 'zstd'
    assert restored['source']['sha256'] == result['artefact']['sha256']
    assert_pg_identical(pg_source, 'appdb', pg_target, 'roundtrip')


def test_round_trip_parallel_directory(pg_source, pg_target, tmp_out):
    dest = tmp_out / 'appdb.dir'
    result = dump(pg_source, dest, format='directory', jobs=2)
    assert not result.get('failed'), result.get('msg')
    assert result['artefact']['type'] == 'directory'
    assert '--jobs=2' in result['commands'][0]
    pg_target.drop_db('parallel_dir')
    restored = restore(pg_target, 'parallel_dir', dest, create=True, jobs=2, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert '--jobs=2' in restored['commands'][0]
    assert_pg_identical(pg_source, 'appdb', pg_target, 'parallel_dir')


def test_round_trip_parallel_from_compressed_custom(pg_source, pg_target, tmp_out):
    """jobs: 2 on a dump compressed as a whole goes through a seekable temp copy, removed afterwards."""
    dest = tmp_out / 'appdb.pgc.zst'
    assert not dump(pg_source, dest).get('failed')
    pg_target.drop_db('parallel_zst')
    restored = restore(pg_target, 'parallel_zst', dest, create=True, jobs=2)
    assert not restored.get('failed'), restored.get('msg')
    assert sorted(os.listdir(tmp_out)) == ['appdb.pgc.zst']
    assert_pg_identical(pg_source, 'appdb', pg_target, 'parallel_zst')


@pytest.mark.parametrize('fmt,compression', [('plain', 'zstd'), ('plain', 'gzip'), ('custom', 'none'), ('custom', 'gzip')])
def test_round_trip_other_formats(pg_source, pg_target, tmp_out, fmt, compression):
    dest = tmp_out / ('appdb.%s.%s' % (fmt, compression))
    result = dump(pg_source, dest, format=fmt, compression=compression)
    assert not result.get('failed'), result.get('msg')
    name = 'fmt_%s_%s' % (fmt, compression)
    pg_target.drop_db(name)
    restored = restore(pg_target, name, dest, create=True, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert restored['source']['format'] == fmt
    assert_pg_identical(pg_source, 'appdb', pg_target, name)


def test_clean_restore_replaces_changed_database(pg_source, pg_target, tmp_out):
    dest = tmp_out / 'appdb.pgc.zst'
    assert not dump(pg_source, dest).get('failed')
    pg_target.drop_db('cleaned')
    assert not restore(pg_target, 'cleaned', dest, create=True).get('failed')
    pg_target.psql('DELETE FROM app.audit_log; DROP VIEW sub_a.recent; UPDATE app.users SET name = $$x$$ WHERE id < 500',
                   db='cleaned')
    restored = restore(pg_target, 'cleaned', dest, clean=True)
    assert not restored.get('failed'), restored.get('msg')
    assert restored['database_created'] is False
    assert_pg_identical(pg_source, 'appdb', pg_target, 'cleaned')


def test_plain_clean_swaps_side_database(pg_source, pg_target, tmp_out):
    dest = tmp_out / 'appdb.sql.zst'
    assert not dump(pg_source, dest, format='plain').get('failed')
    pg_target.drop_db('plain_clean')
    assert not restore(pg_target, 'plain_clean', dest, create=True).get('failed')
    pg_target.psql('DROP TABLE sub_a.records CASCADE', db='plain_clean')
    restored = restore(pg_target, 'plain_clean', dest, clean=True)
    assert not restored.get('failed'), restored.get('msg')
    assert not pg_target.has_db('plain_clean_appvault_new') and not pg_target.has_db('plain_clean_appvault_old')
    assert_pg_identical(pg_source, 'appdb', pg_target, 'plain_clean')


def test_schema_only_dump_of_sub_application(pg_source, pg_target, tmp_out):
    dest = tmp_out / 'sub_a.pgc.zst'
    result = dump(pg_source, dest, schemas=['sub_a'], exclude_table_data=['sub_a.records'])
    assert not result.get('failed'), result.get('msg')
    assert result['inventory']['schemas'] == ['sub_a']
    pg_target.drop_db('only_sub')
    restored = restore(pg_target, 'only_sub', dest, create=True)
    assert not restored.get('failed'), restored.get('msg')
    assert pg_target.psql('SELECT count(*) FROM sub_a.records', db='only_sub') == '0'
    assert pg_target.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'app'", db='only_sub') == '0'


def test_globals_written_without_passwords(pg_source, tmp_out):
    pg_source.psql("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_reader') THEN "
                   "CREATE ROLE app_reader LOGIN PASSWORD 'reader-secret'; END IF; END$$")
    result = dump(pg_source, tmp_out / 'appdb.pgc.zst', globals_dest=str(tmp_out / 'globals.sql'), inventory=False)
    assert not result.get('failed'), result.get('msg')
    text = (tmp_out / 'globals.sql').read_text()
    assert 'CREATE ROLE app_reader' in text
    assert 'SCRAM-SHA-256' not in text and 'reader-secret' not in text
    assert 'inventory' not in result


def test_check_mode_predicts_and_writes_nothing(pg_source, pg_target, tmp_out):
    dest = tmp_out / 'appdb.pgc.zst'
    result = run_module('postgresql_dump', pg_source.conn_args('appdb', dest=str(dest)), check=True)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True and 'pg_dump' in result['commands'][0]
    assert os.listdir(tmp_out) == []
    assert not dump(pg_source, dest).get('failed')
    pg_target.drop_db('never_created')
    predicted = run_module('postgresql_restore', pg_target.conn_args('never_created', src=str(dest), create=True), check=True)
    assert not predicted.get('failed'), predicted.get('msg')
    assert predicted['database_created'] is True and predicted['changed'] is True
    assert not pg_target.has_db('never_created')


def test_module_defaults_action_group(pg_source, tmp_out):
    """Connection options set once for group/appvault.backup.postgresql reach the module."""
    conn = pg_source.conn_args('appdb')
    run = run_playbook([{
        'name': 'dump with group defaults',
        'module_defaults': {'group/appvault.backup.postgresql': conn},
        'appvault.backup.postgresql_dump': {'dest': str(tmp_out / 'grp.pgc.zst'), 'inventory': False},
    }])
    assert run.rc == 0, run.stdout[-2000:]
    assert (tmp_out / 'grp.pgc.zst').stat().st_size > 0


def test_password_never_in_output(pg_source, tmp_out):
    """Neither the verbose job output nor the result carries the password."""
    args = pg_source.conn_args('appdb', dest=str(tmp_out / 'secret.pgc.zst'), inventory=False)
    result = run_module('postgresql_dump', args, verbosity=4)
    assert not result.get('failed'), result.get('msg')
    run = result['_run']
    assert pg_source.password not in run.stdout and pg_source.password not in run.stderr


def test_inventory_matches_dump_while_app_writes(pg_source, pg_target, tmp_out):
    """Rows inserted during the dump: the recorded counts are the dump's own (same snapshot), so the restore verifies."""
    pg_source.psql('CREATE TABLE IF NOT EXISTS app.busy (id serial PRIMARY KEY, at timestamptz DEFAULT now())', db='appdb')
    writer = subprocess.Popen([pg_source.bin_dir + '/psql', '-X', '-q', '-h', str(pg_source.socket_dir), '-p', str(pg_source.port),
                               '-U', 'postgres', '-d', 'appdb', '-c',
                               'DO $$BEGIN FOR i IN 1..4000 LOOP INSERT INTO app.busy DEFAULT VALUES; COMMIT; '
                               'PERFORM pg_sleep(0.001); END LOOP; END$$'])
    try:
        while pg_source.psql('SELECT count(*) FROM app.busy', db='appdb') == '0':
            pass
        result = dump(pg_source, tmp_out / 'busy.pgc.zst')
        still_writing = writer.poll() is None
    finally:
        writer.wait()
    assert not result.get('failed'), result.get('msg')
    assert still_writing, 'the writer finished before the dump did; the test proves nothing'
    recorded = result['inventory']['rows']['app.busy']
    assert 0 < recorded < int(pg_source.psql('SELECT count(*) FROM app.busy', db='appdb'))
    pg_target.drop_db('busy')
    restored = restore(pg_target, 'busy', tmp_out / 'busy.pgc.zst', create=True, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert restored['inventory']['rows']['app.busy'] == recorded
    assert 'app.busy_id_seq' in result['inventory']['_sequence_positions']
    assert any('sequences advanced while the dump ran (app.busy_id_seq' in w for w in result.get('warnings', []))
    pg_source.psql('DROP TABLE app.busy', db='appdb')


def test_no_password_on_any_command_line(pg_source, pg_target, tmp_out):
    """Sample every process's argv while a dump and a restore run: the password never appears on one."""
    dest = str(tmp_out / 'argv.pgc.zst')
    pg_target.drop_db('argv_check')
    seen = []
    for module, args, secret in (('postgresql_dump', pg_source.conn_args('appdb', dest=dest), pg_source.password),
                                 ('postgresql_restore', pg_target.conn_args('argv_check', src=dest, create=True), pg_target.password)):
        rc, leaks, tools = run_module_sampling_argv(module, args, secret, ('psql', 'pg_dump', 'pg_restore', 'zstd'))
        assert rc == 0 and leaks == []
        seen.extend(tools)
    assert {os.path.basename(argv[0].decode()) for argv in seen} >= {'pg_dump', 'pg_restore'}
