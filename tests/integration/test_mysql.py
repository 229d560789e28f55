"""mysql_dump / mysql_restore against real MariaDB servers, run through ansible-playbook."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from harness.common import cached_bytes, free_port, run_module, run_module_sampling_argv, run_playbook
from ansible_collections.appvault.backup.plugins.module_utils import _inventory, _mysql
from harness.compare_mysql import assert_mysql_identical, mysql_inventory


def dump(server, dest, db='appdb', **extra):
    args = server.conn_args(db, dest=str(dest))
    args.update(extra)
    return run_module('mysql_dump', args)


def restore(server, name, src, **extra):
    args = server.conn_args(name, src=str(src))
    args.update(extra)
    return run_module('mysql_restore', args)


@pytest.fixture(scope='module')
def source_dump(mysql_source, tmp_path_factory):
    """One checked dump of the fixture (with checksums) shared by the read-only tests."""
    dest = tmp_path_factory.mktemp('mysql-dump') / 'appdb.sql.zst'
    result = dump(mysql_source, dest, checksums=True)
    assert not result.get('failed'), result.get('msg')
    return dest, result


def test_fixture_inventory_is_rich(mysql_source):
    """The inventory sees every kind of object the fixture holds, so 'identical' below means something."""
    inv = mysql_inventory(mysql_source, 'appdb')
    assert inv['rows']['users'] == 20000 and inv['rows']['measurements'] == 20000
    assert inv['auto_increment']['projects'] == 7778
    assert set(inv['views']) == {'active_users', 'project_stats'}
    assert {'procedure archive_user', 'function score_label'} <= set(inv['routines'])
    assert set(inv['triggers']) == {'projects_audit', 'users_score_guard'}
    assert inv['events']['purge_audit']['status'] == 'DISABLED'
    assert inv['indexes']['projects.projects_ft'].startswith('FULLTEXT')
    assert inv['indexes']['users.users_email'].startswith('UNIQUE')
    assert 'ON DELETE CASCADE' in inv['constraints']['projects.projects_owner_fk']
    assert inv['constraints']['users.users_score_positive'].startswith('CHECK')
    columns = ' '.join(inv['tables']['users']['columns'])
    assert 'on update current_timestamp()' in columns and 'VIRTUAL GENERATED' in columns and 'STORED GENERATED' in columns
    assert inv['tables']['legacy_counters']['engine'] == 'Aria'
    assert inv['definers']['view active_users'] == 'app_owner@%'
    assert inv['checksums']['users'].startswith('s:20000:')


def test_dump_result_and_file(source_dump, mysql_source):
    dest, result = source_dump
    assert result['changed'] is True
    assert result['flavour'] == 'mariadb' and result['server_version'].startswith('10.')
    assert result['compression'] == {'method': 'zstd', 'level': 3, 'how': 'pipe'}
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert result['artefact']['size'] == os.path.getsize(dest) > 0
    assert cached_bytes(dest) < result['artefact']['size'] // 8  # dropped from the page cache once on disk
    assert result['artefact']['sha256'] == subprocess.run(['sha256sum', str(dest)], capture_output=True, text=True,
                                                          check=True).stdout.split()[0]
    command = result['commands'][0]
    assert 'mariadb-dump --defaults-extra-file=' in command
    for flag in ('--single-transaction', '--routines', '--triggers', '--events', '--hex-blob', '--skip-lock-tables',
                 '--default-character-set=utf8mb4'):
        assert flag in command
    assert '--databases' not in command and '--column-statistics' not in command
    assert any('non-transactional' in w and 'legacy_counters' in w for w in result.get('warnings', []))
    text = subprocess.run(['zstd', '-dc', str(dest)], capture_output=True, check=True).stdout.decode('utf-8')
    assert 'CREATE DATABASE' not in text and '\nUSE ' not in text
    assert not [p for p in os.listdir(dest.parent) if p.endswith('.partial')]


def test_round_trip_under_another_name(source_dump, mysql_source):
    dest, result = source_dump
    mysql_source.drop_db('appdb_copy')
    restored = restore(mysql_source, 'appdb_copy', dest, checksums=True, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert restored['database_created'] is True and restored['verified'] is True
    assert restored['binlog_disabled'] is True
    assert restored['source']['sha256'] == result['artefact']['sha256']
    assert restored['source']['definers'] == ['`app_owner`@`%`', '`root`@`localhost`']
    assert_mysql_identical(mysql_source, 'appdb', mysql_source, 'appdb_copy')


def test_missing_definer_is_named_and_nothing_changes(source_dump, mysql_target):
    dest, _result = source_dump
    mysql_target.drop_db('appdb')
    failed = restore(mysql_target, 'appdb', dest)
    assert failed.get('failed')
    assert '`app_owner`@`%`' in failed['msg'] and 'definer: strip' in failed['msg'] and 'definer_account' in failed['msg']
    assert not mysql_target.has_db('appdb')


@pytest.mark.parametrize('mode', ['strip', 'rewrite'])
def test_other_server_with_definer_strip_or_rewrite(source_dump, mysql_source, mysql_target, mode):
    dest, result = source_dump
    name = 'definer_%s' % mode
    mysql_target.drop_db(name)
    extra = {'definer': mode}
    if mode == 'rewrite':
        extra['definer_account'] = 'root@localhost'
    restored = restore(mysql_target, name, dest, checksums=True, expected_inventory=result['inventory'], **extra)
    assert not restored.get('failed'), restored.get('msg')
    assert restored['verified'] is True
    assert_mysql_identical(mysql_source, 'appdb', mysql_target, name, ignore=['definers'])
    definers = set(mysql_inventory(mysql_target, name, checksums=False)['definers'].values())
    assert definers == ({'root@localhost'} if mode == 'rewrite' else {'root@127.0.0.1'})  # strip: the restoring account
    # the data itself was not filtered
    assert mysql_target.sql("SELECT COUNT(*) FROM users WHERE name LIKE '%🎉'", db=name) == '5000'


def test_rewrite_to_missing_account_fails(source_dump, mysql_target):
    dest, _result = source_dump
    failed = restore(mysql_target, 'never', dest, definer='rewrite', definer_account='ghost@%')
    assert failed.get('failed') and '`ghost`@`%`' in failed['msg']
    assert not mysql_target.has_db('never')


@pytest.mark.parametrize('compression', ['gzip', 'none'])
def test_round_trip_other_compression(mysql_source, tmp_out, compression):
    dest = tmp_out / ('appdb.sql.%s' % compression)
    result = dump(mysql_source, dest, compression=compression)
    assert not result.get('failed'), result.get('msg')
    name = 'comp_%s' % compression
    mysql_source.drop_db(name)
    restored = restore(mysql_source, name, dest, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert restored['source']['compression'] == compression
    assert_mysql_identical(mysql_source, 'appdb', mysql_source, name)


def test_clean_replaces_changed_database(source_dump, mysql_source):
    dest, result = source_dump
    mysql_source.drop_db('cleaned')
    assert not restore(mysql_source, 'cleaned', dest).get('failed')
    mysql_source.sql('DELETE FROM audit_log; DROP VIEW project_stats; UPDATE users SET name = "x" WHERE id < 500; '
                     'CREATE TABLE extra (i INT)', db='cleaned')
    restored = restore(mysql_source, 'cleaned', dest, clean=True, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert restored['database_created'] is False and len(restored['commands']) == 2
    assert not mysql_source.has_db('cleaned_appvault_new')
    assert_mysql_identical(mysql_source, 'appdb', mysql_source, 'cleaned')


def test_clean_without_rehearsal_restores_once_in_place(source_dump, mysql_source, tmp_out):
    """rehearse: false (the restore role, which holds a safety snapshot): the dump is checked, the database dropped
    and restored into once over two connections - no side database, no second pass. A dump that fails the check
    changes nothing; an SQL error after the drop is named as such."""
    dest, result = source_dump
    mysql_source.drop_db('in_place')
    assert not restore(mysql_source, 'in_place', dest).get('failed')
    mysql_source.sql('DELETE FROM audit_log; DROP VIEW project_stats; CREATE TABLE extra (i INT)', db='in_place')
    restored = restore(mysql_source, 'in_place', dest, clean=True, rehearse=False, jobs=2, checksums=True,
                       expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert restored['replaced_in_place'] is True and restored['database_created'] is False
    assert restored['jobs'] == 2 and len(restored['commands']) == 3  # one restore: two ranges, then the rest
    assert not mysql_source.has_db('in_place_appvault_new')
    assert_mysql_identical(mysql_source, 'appdb', mysql_source, 'in_place')
    truncated = tmp_out / 'truncated-in-place.sql.zst'
    truncated.write_bytes(dest.read_bytes()[: dest.stat().st_size // 2])
    before = mysql_inventory(mysql_source, 'in_place', checksums=True)
    refused = restore(mysql_source, 'in_place', truncated, clean=True, rehearse=False)
    assert refused.get('failed') and str(truncated) in refused['msg'], refused.get('msg')
    assert _inventory.compare(before, mysql_inventory(mysql_source, 'in_place', checksums=True)) == []
    text = subprocess.run(['zstd', '-dc', str(dest)], capture_output=True, check=True).stdout
    bad = tmp_out / 'late-error-in-place.sql'
    bad.write_bytes(text.replace(b'-- Dumping events', b'INSERT INTO no_such_table VALUES (1);\n-- Dumping events', 1))
    failed = restore(mysql_source, 'in_place', bad, clean=True, rehearse=False)
    assert failed.get('failed') and 'no_such_table' in failed['msg'], failed.get('msg')
    assert 'was dropped to be replaced in place and is incomplete' in failed['msg'], failed['msg']


def test_parallel_restore_is_identical(source_dump, mysql_source, tmp_out):
    """jobs: 2 splits the dump at its tables (header on both), then events, routines and views on one connection."""
    dest, result = source_dump
    mysql_source.drop_db('two_jobs')
    restored = restore(mysql_source, 'two_jobs', dest, jobs=2, checksums=True, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert restored['jobs'] == 2 and restored['verified'] is True
    assert len(restored['commands']) == 3 and 'tail -c' in restored['commands'][1] and 'cat ' in restored['commands'][1]
    # mariadb-dump writes one row a line: the scan's line counts see users' and measurements' 20000 rows each, and
    # the split balances bytes plus a cost per line (the ranges' bytes alone are far apart on this fixture)
    first, second = restored['ranges']
    assert first['lines'] + second['lines'] > 40000 and min(first['lines'], second['lines']) > 10000
    assert all(part['cost'] >= part['bytes'] - 4096 + _mysql.ROW_COST_BYTES * part['lines'] for part in (first, second))
    assert 0.8 < first['cost'] / second['cost'] < 1.25 and second['bytes'] > 2 * first['bytes']
    assert restored['source']['definers'] == ['`app_owner`@`%`', '`root`@`localhost`']
    assert_mysql_identical(mysql_source, 'appdb', mysql_source, 'two_jobs')
    # clean over an existing database: the side database and the final restore both go over two connections
    mysql_source.sql('DELETE FROM audit_log; UPDATE users SET name = "x" WHERE id < 500', db='two_jobs')
    again = restore(mysql_source, 'two_jobs', dest, jobs=2, clean=True, expected_inventory=result['inventory'])
    assert not again.get('failed'), again.get('msg')
    assert again['jobs'] == 2 and len(again['commands']) == 6 and not mysql_source.has_db('two_jobs_appvault_new')
    assert_mysql_identical(mysql_source, 'appdb', mysql_source, 'two_jobs')
    # a failing statement in the second connection's part: reported, the new database dropped
    text = subprocess.run(['zstd', '-dc', str(dest)], capture_output=True, check=True).stdout
    marker = b'-- Dumping data for table `users`'
    assert marker in text
    # from a plain dump (what the restore role extracts) a thread feeds each connection its byte ranges, the
    # LOCK TABLES lines left out as from the compressed one: no tail, head, cat or grep in between. There the split
    # may cut inside a table (row_plan): the tables are created first, then the connections share the rows at equal
    # estimated cost, each cut where an INSERT starts, then the triggers, events, routines and views follow. With four
    # connections one cut falls inside `users` (half the rows' cost, several INSERT statements).
    assert text.count(b'\nLOCK TABLES `') >= 4 and text.count(b'\nUNLOCK TABLES;\n') >= 4
    plain = tmp_out / 'two-jobs-plain.sql'
    plain.write_bytes(text)
    mysql_source.drop_db('two_jobs_plain')
    fed = restore(mysql_source, 'two_jobs_plain', plain, jobs=4, checksums=True, expected_inventory=result['inventory'])
    assert not fed.get('failed'), fed.get('msg')
    assert fed['jobs'] == 4 and len(fed['commands']) == 6
    # (a cut moves on to the next INSERT: mariadb-dump's statements hold ~1 MB of rows, coarse on this small
    # fixture, so the shares' costs are not asserted here; tests/unit/test_mysql_argv.py checks the balance)
    assert sum(part['bytes'] for part in fed['ranges']) < plain.stat().st_size
    starts = [int(command.split(', ')[1].split('-')[0]) for command in fed['commands'][2:5]]  # after the header
    assert all(text[cut - 1:cut] == b'\n' and text[cut:].startswith((b'INSERT INTO `', b'-- Dumping data for table `'))
               for cut in starts), [text[cut:cut + 40] for cut in starts]
    assert text[starts[-1]:].startswith(b'INSERT INTO `users`')
    assert text.rindex(b'-- Dumping data for table `users`', 0, starts[-1]) > text.rindex(b'-- Table structure', 0, starts[-1])
    assert fed['commands'][0].startswith('bytes 0-') and all(' of %s | ' % plain in command for command in fed['commands'])
    assert not any(tool in ' '.join(fed['commands']) for tool in ('tail ', 'head ', 'cat ', 'grep '))
    assert_mysql_identical(mysql_source, 'appdb', mysql_source, 'two_jobs_plain')
    mysql_source.drop_db('two_jobs_plain')
    bad = tmp_out / 'late-error.sql'
    bad.write_bytes(text.replace(marker, b'INSERT INTO no_such_table VALUES (1);\n' + marker, 1))
    mysql_source.drop_db('two_jobs_bad')
    failed = restore(mysql_source, 'two_jobs_bad', bad, jobs=2)
    assert failed.get('failed') and 'no_such_table' in failed['msg'], failed.get('msg')
    assert not mysql_source.has_db('two_jobs_bad')


def test_sql_error_stops_and_changes_nothing(source_dump, mysql_source, tmp_out):
    """A dump that fails part-way: the first SQL error is shown; clean leaves the original untouched."""
    dest, _result = source_dump
    text = subprocess.run(['zstd', '-dc', str(dest)], capture_output=True, check=True).stdout
    marker = b'-- Dumping events'
    broken = text.replace(marker, b'INSERT INTO no_such_table VALUES (1);\n' + marker, 1)
    bad = tmp_out / 'broken.sql'
    bad.write_bytes(broken)
    mysql_source.drop_db('keepme')
    assert not restore(mysql_source, 'keepme', dest).get('failed')
    mysql_source.sql('UPDATE settings SET value = "changed by the app" WHERE name = "site_name"', db='keepme')
    before = mysql_inventory(mysql_source, 'keepme')
    failed = restore(mysql_source, 'keepme', bad, clean=True)
    assert failed.get('failed')
    assert 'ERROR 1146' in failed['msg'] and 'no_such_table' in failed['msg']
    assert _inventory.compare(before, mysql_inventory(mysql_source, 'keepme')) == []  # '_' keys are estimates
    assert not mysql_source.has_db('keepme_appvault_new')
    mysql_source.drop_db('fresh')
    failed = restore(mysql_source, 'fresh', bad)
    assert failed.get('failed') and not mysql_source.has_db('fresh')


def test_corrupt_and_truncated_dumps_are_refused(source_dump, mysql_source, tmp_out):
    dest, _result = source_dump
    data = dest.read_bytes()
    truncated = tmp_out / 'truncated.sql.zst'
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_out / 'corrupt.sql.zst'
    corrupt.write_bytes(data[:1000] + bytes(256) + data[1256:])
    plain_cut = tmp_out / 'cut.sql'
    plain_cut.write_bytes(subprocess.run(['zstd', '-dc', str(dest)], capture_output=True, check=True).stdout[:200000])
    empty = tmp_out / 'empty.sql'
    empty.write_bytes(b'')
    mysql_source.drop_db('never_made')
    for src in (truncated, corrupt, plain_cut, empty):
        failed = restore(mysql_source, 'never_made', src)
        assert failed.get('failed'), src
        assert str(src) in failed['msg'], failed['msg']
        assert not mysql_source.has_db('never_made')
    # Into an existing database without clean the check runs before the client starts: not one row changes.
    mysql_source.drop_db('kept_as_is')
    assert not restore(mysql_source, 'kept_as_is', dest).get('failed')
    mysql_source.sql('UPDATE settings SET value = "edited" WHERE name = "site_name"', db='kept_as_is')
    before = mysql_inventory(mysql_source, 'kept_as_is', checksums=True)
    for src in (truncated, plain_cut):
        failed = restore(mysql_source, 'kept_as_is', src)
        assert failed.get('failed') and str(src) in failed['msg'], failed.get('msg')
        assert _inventory.compare(before, mysql_inventory(mysql_source, 'kept_as_is', checksums=True)) == []


def test_exclusions_and_replace(mysql_source, tmp_out):
    dest = tmp_out / 'partial.sql.zst'
    result = dump(mysql_source, dest, exclude_tables=['settings'], exclude_table_data=['audit_log'], replace=True, checksums=True)
    assert not result.get('failed'), result.get('msg')
    assert '--ignore-table=appdb.settings' in result['commands'][0]
    assert '--ignore-table-data=appdb.audit_log' in result['commands'][0] and '--replace' in result['commands'][0]
    assert 'settings' not in result['inventory']['tables'] and result['inventory']['rows']['audit_log'] == 0
    mysql_source.drop_db('partial')
    restored = restore(mysql_source, 'partial', dest, checksums=True, expected_inventory=result['inventory'])
    assert not restored.get('failed'), restored.get('msg')
    assert mysql_source.sql('SELECT COUNT(*) FROM audit_log', db='partial') == '0'
    assert 'REPLACE INTO' in subprocess.run(['zstd', '-dc', str(dest)], capture_output=True, check=True).stdout.decode()


def test_structure_only_part_without_ignore_table_data(mysql_source, tmp_out):
    """Where the dump tool lacks --ignore-table-data (MySQL), a --no-data part is written ahead of the main dump."""
    from ansible_collections.appvault.backup.plugins.module_utils import _common, _mysql
    params = dict(_mysql.connection_argument_spec_defaults())
    params.update(mysql_source.conn_args('appdb'), compression='zstd', compression_level=None, replace=False,
                  exclude_tables=[], exclude_table_data=['audit_log', 'attachments'])
    dest = tmp_out / 'two-part.sql.zst'
    with _common.SecretDir() as secrets:
        conn = _mysql.Connection(params, secrets)
        conn.connect()
        tool = _mysql.dump_tool(conn)
        tool['ignore_table_data'] = False
        plan = _mysql.dump_plan(conn, params, tool, 2)
        assert plan['structure'] is not None and '--no-data' in plan['structure']
        _mysql.dump(conn, plan, str(dest))
        expected = _mysql.inventory(conn, 'appdb', exclude_table_data=params['exclude_table_data'])
    mysql_source.drop_db('two_part')
    restored = restore(mysql_source, 'two_part', dest, expected_inventory=expected)
    assert not restored.get('failed'), restored.get('msg')
    assert mysql_source.sql('SELECT COUNT(*) FROM attachments', db='two_part') == '0'


def test_users_dest(mysql_source, tmp_out):
    result = dump(mysql_source, tmp_out / 'db.sql.zst', users_dest=str(tmp_out / 'users.sql'), inventory=False)
    assert not result.get('failed'), result.get('msg')
    text = (tmp_out / 'users.sql').read_text()
    assert 'app_owner' in text and 'GRANT' in text.upper()
    assert stat.S_IMODE(os.stat(tmp_out / 'users.sql').st_mode) == 0o600


def test_bad_connection_input(mysql_source, tmp_out):
    dest = tmp_out / 'x.sql.zst'
    wrong = run_module('mysql_dump', mysql_source.conn_args('appdb', dest=str(dest), login_password='wrong'))
    assert wrong.get('failed') and 'Access denied' in wrong['msg'] and 'wrong' not in wrong['msg'].replace('wrong password', '')
    unknown = dump(mysql_source, dest, db='no_such_db')
    assert unknown.get('failed') and 'no_such_db' in unknown['msg'] and 'does not exist' in unknown['msg']
    down = run_module('mysql_dump', mysql_source.conn_args('appdb', dest=str(dest), login_port=free_port(), connect_timeout=2))
    assert down.get('failed') and "Can't connect" in down['msg']
    assert os.listdir(tmp_out) == []


def test_bad_destination(mysql_source, tmp_out):
    missing = dump(mysql_source, tmp_out / 'nodir' / 'x.sql.zst')
    assert missing.get('failed') and 'does not exist' in missing['msg']
    existing = tmp_out / 'exists.sql.zst'
    existing.write_text('keep me')
    refused = dump(mysql_source, existing)
    assert refused.get('failed') and 'force: true' in refused['msg']
    assert existing.read_text() == 'keep me'
    gone = restore(mysql_source, 'whatever', tmp_out / 'nothing.sql.zst')
    assert gone.get('failed') and 'does not exist' in gone['msg']


def test_disk_full(mysql_source, tmp_path):
    small = tmp_path / 'small'
    small.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(small)], check=False).returncode:
        pytest.skip('cannot mount a tmpfs here')
    try:
        failed = dump(mysql_source, small / 'full.sql.zst', compression='none')
        assert failed.get('failed')
        assert 'No space left' in failed['msg'] or 'space' in failed['msg'].lower(), failed['msg']
        assert os.listdir(small) == []
    finally:
        subprocess.run(['umount', str(small)], check=False)


def test_no_password_on_any_command_line(mysql_source, tmp_out):
    """Sample every process's argv while a dump and a restore run: the password never appears, the option file is first."""
    seen = []
    for module, args in (('mysql_dump', mysql_source.conn_args('appdb', dest=str(tmp_out / 'p.sql.zst'), checksums=True)),
                         ('mysql_restore', mysql_source.conn_args('argv_check', src=str(tmp_out / 'p.sql.zst')))):
        rc, leaks, tools = run_module_sampling_argv(module, args, mysql_source.password, ('mariadb', 'mariadb-dump', 'mysql', 'mysqldump'))
        assert rc == 0 and leaks == []
        seen.extend(tools)
    assert seen, 'no client process was sampled'
    assert all(argv[1].startswith(b'--defaults-extra-file=') for argv in seen)
    assert not any(a.startswith((b'--password', b'-p')) for argv in seen for a in argv[1:])


def test_check_mode_predicts_and_changes_nothing(mysql_source, tmp_out):
    dest = tmp_out / 'check.sql.zst'
    predicted = run_module('mysql_dump', mysql_source.conn_args('appdb', dest=str(dest)), check=True)
    assert not predicted.get('failed'), predicted.get('msg')
    assert predicted['changed'] is True and 'mariadb-dump' in predicted['commands'][0]
    assert os.listdir(tmp_out) == []
    assert not dump(mysql_source, dest, inventory=False).get('failed')
    mysql_source.drop_db('never_created')
    predicted = run_module('mysql_restore', mysql_source.conn_args('never_created', src=str(dest)), check=True)
    assert not predicted.get('failed'), predicted.get('msg')
    assert predicted['database_created'] is True and predicted['changed'] is True
    assert not mysql_source.has_db('never_created')


def test_config_file_and_module_defaults(mysql_source, tmp_out):
    """Credentials from the user's own option file; connection options from group/appvault.backup.mysql."""
    cnf = tmp_out.parent / 'my.cnf'
    cnf.write_text('[client]\nuser=root\npassword="%s"\n' % mysql_source.password.replace('\\', '\\\\').replace('"', '\\"'))
    cnf.chmod(0o600)
    run = run_playbook([{
        'name': 'dump with group defaults',
        'module_defaults': {'group/appvault.backup.mysql': {
            'login_host': '127.0.0.1', 'login_port': mysql_source.port, 'config_file': str(cnf)}},
        'appvault.backup.mysql_dump': {'name': 'appdb', 'dest': str(tmp_out / 'grp.sql.zst'), 'inventory': False},
    }])
    assert run.rc == 0, run.stdout[-2000:]
    assert (tmp_out / 'grp.sql.zst').stat().st_size > 0


def test_password_never_in_output(mysql_source, tmp_out):
    args = mysql_source.conn_args('appdb', dest=str(tmp_out / 'secret.sql.zst'), inventory=False)
    result = run_module('mysql_dump', args, verbosity=4)
    assert not result.get('failed'), result.get('msg')
    run = result['_run']
    assert mysql_source.password not in run.stdout and mysql_source.password not in run.stderr
