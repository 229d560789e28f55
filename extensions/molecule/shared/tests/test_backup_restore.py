"""After backup, damage and restore (backup_restore_postgresql, backup_restore_mariadb): everything is back as it
was before the damage, the restore ran in maintenance with the upgrade, the replaced storage was kept aside, and
the archive is private."""

from __future__ import annotations

import posixpath


def test_files_identical_to_before_the_damage(saved, current_state, assert_same_state):
    """Every path under storage/ and .env: type, sha256, size, mode, owner, group, link target."""
    assert_same_state(saved('before')['files'], current_state['files'])


def test_database_identical_to_before_the_damage(saved, current_state, assert_same_state):
    """Object inventory (owners, definitions, sequences, large objects ...) and every table's rows and checksum."""
    assert_same_state(saved('before')['database'], current_state['database'])


def test_restore_ran_in_maintenance_with_the_upgrade(events_after):
    names = [event.name for event in events_after('restore')]
    assert 'maintenance-on' in names, names
    assert 'maintenance-off' in names, names
    assert names.index('maintenance-on') < len(names) - 1 - names[::-1].index('maintenance-off'), names
    assert 'upgrade' in names, 'the version differs from the backup\'s, so the upgrade must run: %s' % names
    assert names.index('maintenance-on') < names.index('upgrade'), names
    assert [name for name in names if name.startswith('maintenance-')][-1] == 'maintenance-off', 'left in maintenance: %s' % names


def test_app_commands_ran_as_the_app_owner(events_after):
    events = events_after('restore')
    assert events
    assert {event.user for event in events} == {'app'}, events


def test_replaced_storage_kept_aside(host, app_root):
    aside = host.check_output('ls -d %s/storage-bak-* 2>/dev/null || true' % app_root).split()
    assert aside, 'no %s/storage-bak-* after the restore' % app_root
    # the damaged tree, not a copy of the restored one
    assert host.file(posixpath.join(aside[-1], 'app/attachments/intruder.txt')).exists, aside


def test_backup_archive_is_private_and_intact(host, saved):
    result = saved('backup-result')
    assert set(result) >= {'name', 'path', 'size', 'sha256', 'duration'}, result
    archive = host.file(result['path'])
    assert archive.exists
    assert archive.mode == 0o600, oct(archive.mode)
    assert archive.size == result['size']
    assert host.check_output('sha256sum %s' % result['path']).split()[0] == result['sha256']
    directory = host.file(posixpath.dirname(result['path']))
    assert directory.mode == 0o700, oct(directory.mode)


def test_app_reaches_its_database_with_the_password_in_its_env(host, fixture_config, app_root):
    env = dict(line.split('=', 1) for line in host.file(app_root + '/.env').content_string.splitlines() if '=' in line)
    password = env['DB_PASSWORD'].strip('"')
    if fixture_config['engine'] == 'postgresql':
        command = host.run('env PGPASSWORD=%s psql -X -A -t -h 127.0.0.1 -U fixture -d fixture -c %s', password, 'SELECT count(*) FROM app.users')
    else:
        command = host.run('env MYSQL_PWD=%s mariadb -h 127.0.0.1 -u fixture --batch --skip-column-names -e %s fixture', password,
                           'SELECT COUNT(*) FROM users')
    assert command.rc == 0, command.stderr
    assert int(command.stdout.strip()) > 0
