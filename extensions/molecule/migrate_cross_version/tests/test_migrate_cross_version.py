"""After migrating Debian 12 -> Debian 13 (PostgreSQL 15 -> 17, MariaDB 10.11 -> 11.8): each target holds its
source's files and database, and the verification table says so. Then the downgrade PostgreSQL 17 -> 15 was blocked
by the compatibility gate naming both versions, and neither of its hosts changed."""

from __future__ import annotations

import json

import pytest


def across_versions(database):
    """What only the newer PostgreSQL spells differently is left out - view definitions (16 prints columns without
    their relation's name) and identity on partitions (17 shows the partitioned table's identity there too); every
    other object, every row count and every table checksum stays in the comparison."""
    database = json.loads(json.dumps(database))
    inventory = database.get('inventory') or {}
    partitions = set()
    for row in inventory.get('relations') or []:
        if row.get('kind') in ('v', 'm'):
            row.pop('definition', None)
        if row.get('partition'):
            partitions.add((row.get('schema'), row.get('name')))
    for row in inventory.get('columns') or []:
        if (row.get('schema'), row.get('relation')) in partitions:
            row.pop('identity', None)
    return database


@pytest.fixture(scope='module')
def side(host):
    return 'target' if host.file('/var/lib/appvault-molecule/migrate-result.json').exists else 'source'


def test_target_files_equal_the_sources(side, saved, current_state, assert_same_state):
    expected = saved('source-before' if side == 'target' else 'before')['files']
    assert_same_state(expected, current_state['files'])


def test_target_database_equals_the_sources(side, saved, current_state, assert_same_state):
    """Object inventory and every table's rows and checksum, read by the state helper on the newer server."""
    expected = saved('source-before' if side == 'target' else 'before')['database']
    assert_same_state(across_versions(expected), across_versions(current_state['database']))


def test_versions_really_differ_and_the_table_says_equal(side, host, saved, fixture_config):
    if side == 'source':
        assert host.system_info.release.startswith('12'), host.system_info.release
        return
    assert host.system_info.release.startswith('13'), host.system_info.release
    result = saved('migrate-result')
    assert result['verified'] is True and result['transfer'] == 'direct', result
    rows = {(row['kind'], row['id']): row for row in result['compared']}
    assert rows[('database', 'main')]['equal'] and 'per-table checksums' in rows[('database', 'main')]['compared'], rows
    if fixture_config['engine'] == 'postgresql':
        assert host.check_output('pg_lsclusters --no-header').split()[0] == '17'
    else:
        assert host.check_output('mariadb --version').find(' 11.8.') > 0


def test_downgrade_blocked_with_a_clear_reason(host, saved, fixture_config):
    if fixture_config['engine'] != 'postgresql':
        assert not host.file('/var/lib/appvault-molecule/downgrade-failure.json').exists
        return
    failure = saved('downgrade-failure')
    message = failure['msg']
    assert 'nothing was changed' in message.lower(), failure
    if host.system_info.release.startswith('12'):  # the downgrade's target: the gate speaks here
        assert 'PostgreSQL 17' in message and '15' in message and 'older server' in message, failure
    else:
        assert 'failed its preflight' in message, failure


def test_downgrade_changed_nothing(host, saved, current_state, assert_same_state, fixture_config):
    if fixture_config['engine'] != 'postgresql':
        assert not host.file('/var/lib/appvault-molecule/before-downgrade.json').exists
        return
    before = saved('before-downgrade')
    assert_same_state(before['files'], current_state['files'])
    assert_same_state(before['database'], current_state['database'])
    listing = host.check_output('ls -A /var/backups/appvault').split()
    assert not [name for name in listing if name.endswith('.partial')], listing
    # the source's preflight took its run lock; the target's failed gate released it before the source stopped
    assert '.appvault-run.lock' not in listing, listing
