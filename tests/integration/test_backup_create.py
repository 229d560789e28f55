"""backup_create: every database of an app dumped and archived with its paths in one module call (real servers)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path


from harness.common import run_module


def test_one_call_dumps_both_engines_and_archives_them_with_the_paths(two_engine_app, pg_source, mysql_source):
    app, definition = two_engine_app
    # release_lock with a lock that another run holds: the backup succeeds, that lock is left alone, with a warning
    assert not run_module('run_lock', dict(path=str(app.backups), create=True, token='other', operation='restore')).get('failed')
    result = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='t0k3n', app_version='1.0.0',
                                              label='both', release_lock='t0k3n'))
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True and result['lock_released'] is False
    assert json.loads((app.backups / '.appvault-run.lock').read_text())['token'] == 'other'
    assert any('held by restore on' in w and 'not by this run; left alone' in w for w in result.get('warnings', [])), result.get('warnings')
    archive = Path(result['path'])
    assert archive.name.startswith('fixture-') and archive.name.endswith('-both.tar.zst')
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert result['sha256'] == digest == Path(result['checksum_file']).read_text().split()[0]
    # The manifest (first member) carries each database's engine and inventory; the row counts are the live ones.
    listed = subprocess.run(['tar', '--zstd', '-tf', str(archive)], capture_output=True, text=True, check=True).stdout.split()
    assert listed[0] == 'manifest.json'
    assert {'db/main.pgdump', 'db/shop.sql'} <= set(listed), listed[:6]
    databases = dict((db['id'], db) for db in result['manifest']['databases'])
    assert databases['main']['engine'] == 'postgresql' and databases['shop']['engine'] == 'mariadb'
    assert databases['main']['inventory']['rows']['app.audit_log'] == int(
        pg_source.psql('SELECT count(*) FROM app.audit_log', db='two_pg').strip())
    shop_rows = databases['shop']['inventory']['rows']
    table = sorted(shop_rows)[0]
    assert shop_rows[table] == int(mysql_source.sql('SELECT COUNT(*) FROM `%s`' % table, db='two_my').strip())
    # Each dump's sha256 in the member table (taken as the dump was written, not read again) is its content's.
    members = json.loads(subprocess.run(['tar', '--zstd', '-xOf', str(archive), 'manifest.json'], capture_output=True,
                                        check=True).stdout)['members']
    for member in ('db/main.pgdump', 'db/shop.sql'):
        content = subprocess.run(['tar', '--zstd', '-xOf', str(archive), member], capture_output=True, check=True).stdout
        assert len(content) == members[member]['size'] > 0
        assert members[member]['sha256'] == hashlib.sha256(content).hexdigest(), member
    assert result['manifest']['app']['version'] == '1.0.0'
    assert [p['id'] for p in result['manifest']['paths']] == ['storage', 'config']
    # One line per dump in the log; the work directory is gone; no password anywhere in the result.
    assert [line.split(' (')[0] for line in result['log'] if line.startswith('dumped')] == ['dumped database main', 'dumped database shop']
    assert not (app.backups / '.work-t0k3n').exists()
    output = result['_run'].stdout + result['_run'].stderr  # the whole ansible-playbook output, result included
    assert pg_source.password not in output and mysql_source.password not in output


def test_a_failing_dump_leaves_nothing_behind(two_engine_app):
    app, definition = two_engine_app
    definition['databases'][1]['login_password'] = 'wrong-password-1'
    assert not run_module('run_lock', dict(path=str(app.backups), create=True, token='f41l', operation='backup')).get('failed')
    result = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='f41l', release_lock='f41l'))
    assert result.get('failed')
    assert 'denied' in result['msg'].lower(), result['msg']
    assert 'wrong-password-1' not in result['_run'].stdout + result['_run'].stderr
    # The PostgreSQL dump had been written already: it went with the work directory; no archive, no partial file. The
    # run's lock is kept for its caller to release (release_lock acts on success only).
    assert sorted(p.name for p in app.backups.iterdir()) == ['.appvault-run.lock']


def test_a_bad_token_is_refused_before_anything_is_written(two_engine_app):
    app, definition = two_engine_app
    result = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='../x'))
    assert result.get('failed') and 'token must be ASCII letters and digits' in result['msg']
    assert not app.backups.exists()


def test_a_bad_send_to_is_refused_before_anything_is_dumped(two_engine_app):
    app, definition = two_engine_app
    for send_to, message in ((dict(dest='standby:relative/dir'), 'is not user@host:/absolute/dir'),
                             (dict(dest='root@standby:/srv/in', host_keys=['not a key']), 'is not an SSH public key'),
                             (dict(dest='root@standby:/srv/in', identity='/k', identity_key='k'), 'mutually exclusive')):
        result = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), send_to=send_to))
        assert result.get('failed') and message in result['msg'], result.get('msg')
        assert not app.backups.exists() or sorted(p.name for p in app.backups.iterdir()) == []
