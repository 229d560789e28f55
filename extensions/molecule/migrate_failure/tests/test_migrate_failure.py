"""After a migration whose restore failed midway on the target: both hosts failed naming the upgrade, the target is
back to its own state from before the migration (not the source's), and the source is untouched and out of the
cutover's maintenance."""

from __future__ import annotations

STATE_DIR = '/var/lib/appvault-molecule'


def _side(host):
    return 'target' if host.file('/etc/fixture-app/fail-upgrade').exists else 'source'


def test_the_migration_failed_naming_the_upgrade(saved):
    failure = saved('migrate-failure')
    assert 'upgrade' in failure['msg'].lower(), failure


def test_files_as_before_the_migration(saved, current_state, assert_same_state):
    assert_same_state(saved('before')['files'], current_state['files'])


def test_database_as_before_the_migration(saved, current_state, assert_same_state):
    assert_same_state(saved('before')['database'], current_state['database'])


def test_the_target_state_kept_is_its_own(host, saved):
    """The checks above mean something only if the target's state differed from the source's archive."""
    state = saved('before')
    has_own_file = 'storage/app/attachments/target-only.txt' in state['files']
    assert has_own_file == (_side(host) == 'target'), sorted(state['files'])[:5]


def test_maintenance_lifted_on_both_sides(host, events_after):
    names = [event.name for event in events_after('migrate')]
    maintenance = [name for name in names if name.startswith('maintenance-')]
    assert maintenance and maintenance[0] == 'maintenance-on' and maintenance[-1] == 'maintenance-off', names
    if _side(host) == 'target':
        assert 'upgrade-failed' in names, names
        assert names.index('maintenance-on') < names.index('upgrade-failed') < len(names) - 1 - names[::-1].index('maintenance-off'), names
    else:
        assert 'upgrade-failed' not in names and 'restart' not in names, names
    assert not host.file('/srv/fixture-app/storage/framework/down').exists


def test_no_lock_key_or_partial_left(host):
    listing = host.check_output('ls -A /var/backups/appvault').split()
    assert not [name for name in listing if name == '.appvault-run.lock' or name.endswith('.partial')], listing
    assert 'appvault-transfer' not in host.file('/root/.ssh/authorized_keys').content_string
