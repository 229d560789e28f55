"""After playbooks/migrate.yml (PostgreSQL pair host to host with cutover and a mapped database name, MariaDB pair
through the controller): each target holds its source's files and database, the comparison table says so, the
transfer went the way it was asked, the ephemeral key is gone, and each source is unchanged (and in maintenance only
after the cutover)."""

from __future__ import annotations

import json

import pytest

STATE_DIR = '/var/lib/appvault-molecule'


@pytest.fixture(scope='module')
def side(host):
    """'target' on a host the migration restored (it kept a result), 'source' otherwise."""
    return 'target' if host.file(STATE_DIR + '/migrate-result.json').exists else 'source'


@pytest.fixture(scope='module')
def engine(fixture_config):
    return fixture_config['engine']


def _without_database_name(database):
    """The PostgreSQL target's database has the mapped name; everything else must be equal."""
    database = json.loads(json.dumps(database))
    for row in database.get('inventory', {}).get('database') or []:
        row.pop('name', None)
    return database


def test_files_equal_the_sources_before_the_migration(side, saved, current_state, assert_same_state):
    """Target: every path the source had (type, sha256, size, mode, owner, group); source: untouched."""
    expected = saved('source-before' if side == 'target' else 'before')['files']
    actual = current_state['files']
    if side == 'source':
        # the cutover's maintenance flag is the one change a migration makes on a source
        actual = dict((name, entry) for name, entry in actual.items() if not name.endswith('storage/framework/down'))
        expected = dict((name, entry) for name, entry in expected.items() if not name.endswith('storage/framework/down'))
    assert_same_state(expected, actual)


def test_database_equals_the_sources_before_the_migration(side, saved, current_state, assert_same_state):
    expected = saved('source-before' if side == 'target' else 'before')['database']
    assert_same_state(_without_database_name(expected), _without_database_name(current_state['database']))


def test_target_result_compared_databases_and_paths(side, saved, engine):
    if side == 'source':
        assert not saved('before') == {}, 'the source keeps only its state'
        return
    result = saved('migrate-result')
    assert result['verified'] is True, result
    compared = {(row['kind'], row['id']): row for row in result['compared']}
    assert set(compared) == {('database', 'main'), ('path', 'storage'), ('path', 'config')}, compared
    assert all(row['equal'] for row in compared.values()), compared
    assert 'per-table checksums' in compared[('database', 'main')]['compared']
    assert compared[('database', 'main')]['source'] == compared[('database', 'main')]['target']
    assert compared[('path', 'storage')]['source'] == compared[('path', 'storage')]['target']
    if engine == 'postgresql':
        assert result['transfer'] == 'direct' and result['controller_bytes'] == 0, result
        assert result['transfer_streamed'] is True, 'the backup streamed the archive to the target: %s' % result
        assert result['sha256_checked_on_arrival'] is True, 'the restore trusted the check on arrival: %s' % result
        assert result['cutover'] is True
    else:
        assert result['transfer'] == 'controller' and result['controller_bytes'] == result['size'] > 0, result
        assert result['transfer_streamed'] is False, result
        assert result['sha256_checked_on_arrival'] is False, 'through the controller the restore hashes it: %s' % result
        assert 'controller' in result['transfer_reason']


def test_restore_ran_in_maintenance_on_the_target_and_cutover_left_the_source_down(side, events_after, engine, host):
    names = [event.name for event in events_after('migrate')]
    maintenance = [name for name in names if name.startswith('maintenance-')]
    if side == 'target':
        assert maintenance[:1] == ['maintenance-on'] and maintenance[-1] == 'maintenance-off', names
        assert 'upgrade' not in names, 'same app version on both sides: no upgrade expected: %s' % names
    elif engine == 'postgresql':
        assert maintenance == ['maintenance-on'], 'the cutover leaves the source in maintenance: %s' % names
        assert host.file('/srv/fixture-app/storage/framework/down').exists
    else:
        assert maintenance == [], 'no cutover, no maintenance on the source: %s' % names


def test_no_key_partial_or_stray_file_is_left(side, host):
    authorized = host.file('/root/.ssh/authorized_keys').content_string
    assert 'appvault-transfer' not in authorized
    assert host.run('ls -d /tmp/appvault-transfer-* 2>/dev/null').stdout.strip() == ''
    listing = host.check_output('ls -A /var/backups/appvault').split()
    assert not [name for name in listing if name.endswith('.partial')], listing
    archives = [name for name in listing if name.endswith('-migrate.tar.zst')]
    assert len(archives) == 1 and archives[0] + '.sha256' in listing, listing
    if side == 'target':
        digest, name = host.check_output('cat /var/backups/appvault/%s.sha256' % archives[0]).split()
        assert name == archives[0]
        assert host.check_output('sha256sum /var/backups/appvault/%s' % archives[0]).split()[0] == digest
        assert host.file('/var/backups/appvault').mode == 0o700
