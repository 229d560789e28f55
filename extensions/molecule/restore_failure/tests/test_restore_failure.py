"""After a restore whose upgrade failed: the role failed naming the upgrade step, maintenance was switched off
after the failure, and files and database are as they were just before the restore began (not the backup's)."""

from __future__ import annotations


def test_restore_failed_naming_the_upgrade_step(saved):
    failure = saved('restore-failure')
    message = str(failure['result'].get('msg', ''))
    assert 'upgrade' in message.lower(), failure


def test_maintenance_switched_off_after_the_failed_upgrade(events_after):
    names = [event.name for event in events_after('restore')]
    assert 'maintenance-on' in names, names
    assert 'upgrade-failed' in names, 'the upgrade did not run: %s' % names
    assert names.index('maintenance-on') < names.index('upgrade-failed'), names
    assert 'maintenance-off' in names[names.index('upgrade-failed') + 1:], 'no maintenance-off after the failure: %s' % names
    assert [name for name in names if name.startswith('maintenance-')][-1] == 'maintenance-off', 'left in maintenance: %s' % names


def test_files_as_just_before_the_restore(saved, current_state, assert_same_state):
    assert_same_state(saved('before-restore')['files'], current_state['files'])


def test_database_as_just_before_the_restore(saved, current_state, assert_same_state):
    assert_same_state(saved('before-restore')['database'], current_state['database'])


def test_the_state_kept_is_not_the_backups(saved):
    """The checks above mean something only if the state before the restore differs from the backup's."""
    state = saved('before-restore')
    assert 'storage/app/attachments/after-backup.txt' in state['files']
    assert state['database']['tables']['sub_a.records']['rows'] == 10001
