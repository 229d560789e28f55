"""The maintenance module: its host-side lease runs maintenance_off by itself when nobody switches maintenance off."""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from harness.common import run_module, wait_for

SCRIPT = """#!/bin/sh
echo "$1 $(id -un)" >> "$(dirname "$0")/events.log"
[ "$1" = fail ] && { echo "cannot go down" >&2; exit 4; }
[ "$1" = on ] && touch "$(dirname "$0")/down"
[ "$1" = off ] && rm -f "$(dirname "$0")/down"
exit 0
"""


@pytest.fixture
def app(work_base, request):
    base = Path(work_base) / request.node.name  # a directory the owner (nobody) can enter, unlike pytest's tmp_path
    root = base / 'app'
    root.mkdir(parents=True)
    os.chmod(root, 0o777)
    script = root / 'cmd'
    script.write_text(SCRIPT)
    script.chmod(0o755)
    backups = base / 'backups'
    backups.mkdir(mode=0o700)
    return root, backups


def args(root, backups, state, **extra):
    out = dict(state=state, path=str(backups), token='run-1', chdir=str(root),
               maintenance_on=[[str(root / 'cmd'), 'on']], maintenance_off=[[str(root / 'cmd'), 'off']])
    out.update(extra)
    return out


def events(root):
    path = root / 'events.log'
    return path.read_text().splitlines() if path.exists() else []


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_lease_switches_maintenance_off_when_nobody_does(app):
    root, backups = app
    result = run_module('maintenance', args(root, backups, 'on', lease=3))
    assert not result.get('failed'), result
    assert (root / 'down').exists()
    state_file = backups / '.appvault-maintenance.json'
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    pid = result['lease']['pid']
    assert json.loads(state_file.read_text())['pid'] == pid and alive(pid)
    # ansible-playbook has ended; the timer lives on and ends maintenance after the lease.
    assert wait_for(lambda: not (root / 'down').exists(), 15), events(root)
    assert wait_for(lambda: not alive(pid), 5)
    assert not state_file.exists()
    assert [e.split()[0] for e in events(root)] == ['on', 'off']
    # The next run hears about it.
    result = run_module('maintenance', args(root, backups, 'off', token='run-2'))
    assert not result.get('failed'), result
    result = run_module('maintenance', args(root, backups, 'on', token='run-2', lease=0))
    assert 'expired at' in result['expired_earlier'] and 'run-1' in result['expired_earlier']
    assert result['lease'] is None and not state_file.exists()


def test_off_disarms_the_timer(app):
    root, backups = app
    result = run_module('maintenance', args(root, backups, 'on', lease=30))
    pid = result['lease']['pid']
    result = run_module('maintenance', args(root, backups, 'off'))
    assert not result.get('failed') and result['disarmed'] is True, result
    assert wait_for(lambda: not alive(pid), 5), 'the timer was not stopped'
    assert [e.split()[0] for e in events(root)] == ['on', 'off']
    assert not (backups / '.appvault-maintenance.json').exists()


def test_a_new_run_takes_over_a_dead_runs_lease(app):
    root, backups = app
    old = run_module('maintenance', args(root, backups, 'on', lease=30))['lease']
    new = run_module('maintenance', args(root, backups, 'on', token='run-2', lease=600))
    assert new['took_over']['token'] == 'run-1'
    assert wait_for(lambda: not alive(old['pid']), 5), 'the dead run\'s timer was not stopped'
    assert (root / 'down').exists() and alive(new['lease']['pid'])
    run_module('maintenance', args(root, backups, 'off', token='run-2'))
    assert wait_for(lambda: not alive(new['lease']['pid']), 5)
    assert [e.split()[0] for e in events(root)] == ['on', 'on', 'off'], 'only the last run switches maintenance off'


def test_failing_maintenance_off_arms_the_timer_again(app):
    root, backups = app
    run_module('maintenance', args(root, backups, 'on', lease=5))
    result = run_module('maintenance', args(root, backups, 'off', maintenance_off=[[str(root / 'cmd'), 'fail']]))
    assert result['failed'] and 'cannot go down' in result['msg'] and 'armed again' in result['msg'], result
    retry = result['retry']
    assert retry['seconds'] == 5 and alive(retry['pid']), retry  # the lease was shorter than the 30 s retry
    assert (root / 'down').exists()
    # The timer runs the off commands of the failed call again: here they fail again, and the next call says so.
    assert wait_for((backups / '.appvault-maintenance.fired.json').exists, 20)
    assert [e.split()[0] for e in events(root)] == ['on', 'fail', 'fail']
    result = run_module('maintenance', args(root, backups, 'off'))
    assert not result.get('failed') and 'maintenance_off failed' in result['expired_earlier'], result
    assert not (root / 'down').exists()


def test_failing_maintenance_off_without_a_lease_says_nothing_retries(app):
    root, backups = app
    run_module('maintenance', args(root, backups, 'on', lease=0))
    result = run_module('maintenance', args(root, backups, 'off', maintenance_off=[[str(root / 'cmd'), 'fail']]))
    assert result['failed'] and 'no host-side timer runs it again' in result['msg'] and result['retry'] is None, result
    assert not (backups / '.appvault-maintenance.json').exists()


def fake_snapshot(backups):
    """A file with the name and the checksum sidecar of a restore's safety snapshot (its content is not read)."""
    snapshot = backups / 'fixture-20260101T000000Z-pre-restore.tar.zst'
    snapshot.write_bytes(b'snapshot')
    Path(str(snapshot) + '.sha256').write_text('%s  %s\n' % ('0' * 64, snapshot.name))
    return snapshot


def test_off_can_release_the_run_lock_and_remove_the_snapshot(app):
    root, backups = app
    lock = backups / '.appvault-run.lock'
    assert not run_module('run_lock', dict(path=str(backups), token='run-1', operation='restore')).get('failed')
    assert lock.exists()
    run_module('maintenance', args(root, backups, 'on', lease=30))
    snapshot = fake_snapshot(backups)
    result = run_module('maintenance', args(root, backups, 'off', release_lock=True, remove_snapshot=str(snapshot)))
    assert not result.get('failed') and result['disarmed'] is True, result
    assert result['lock_released'] is True and not lock.exists()
    assert sorted(result['snapshot_removed']) == [str(snapshot), str(snapshot) + '.sha256'], result
    assert not list(backups.glob('fixture-*'))
    assert [e.split()[0] for e in events(root)] == ['on', 'off']


def test_failing_off_still_releases_the_run_lock_and_keeps_the_snapshot(app):
    root, backups = app
    lock = backups / '.appvault-run.lock'
    run_module('run_lock', dict(path=str(backups), token='run-1', operation='restore'))
    run_module('maintenance', args(root, backups, 'on', lease=0))
    snapshot = fake_snapshot(backups)
    result = run_module('maintenance', args(root, backups, 'off', maintenance_off=[[str(root / 'cmd'), 'fail']],
                                            release_lock=True, remove_snapshot=str(snapshot)))
    assert result['failed'] and 'cannot go down' in result['msg'], result
    assert result['lock_released'] is True and not lock.exists(), result
    assert 'snapshot_removed' not in result and snapshot.exists() and Path(str(snapshot) + '.sha256').exists()


def test_off_leaves_another_runs_lock_alone(app):
    root, backups = app
    lock = backups / '.appvault-run.lock'
    run_module('run_lock', dict(path=str(backups), token='run-other', operation='backup'))
    result = run_module('maintenance', args(root, backups, 'off', release_lock=True))
    assert not result.get('failed') and result['lock_released'] is False, result
    assert json.loads(lock.read_text())['token'] == 'run-other'
    assert any('not by this run' in warning for warning in result.get('warnings', [])), result


def test_failing_maintenance_on_is_undone_and_leaves_no_timer(app):
    root, backups = app
    result = run_module('maintenance', args(root, backups, 'on', maintenance_on=[[str(root / 'cmd'), 'on'], [str(root / 'cmd'), 'fail']]))
    assert result['failed'] and 'cannot go down' in result['msg'] and 'maintenance_off was run' in result['msg'], result
    assert [e.split()[0] for e in events(root)] == ['on', 'fail', 'off']
    assert not (root / 'down').exists()
    assert not (backups / '.appvault-maintenance.json').exists()


def test_commands_and_the_timer_run_as_the_owner(app):
    root, backups = app
    owner = 'nobody'
    pwd.getpwnam(owner)
    result = run_module('maintenance', args(root, backups, 'on', lease=2, owner=owner))
    assert not result.get('failed'), result
    assert wait_for(lambda: len(events(root)) == 2, 15), events(root)
    assert events(root) == ['on nobody', 'off nobody']


def test_check_mode_runs_nothing(app):
    root, backups = app
    result = run_module('maintenance', args(root, backups, 'on'), check=True)
    assert result['changed'] and not events(root) and not (backups / '.appvault-maintenance.json').exists()


def test_bad_input_is_named(app):
    root, backups = app
    result = run_module('maintenance', args(root, backups, 'on', path=str(Path(backups) / 'missing')))
    assert result['failed'] and 'is not a directory' in result['msg']
    result = run_module('maintenance', args(root, backups, 'on', lease=-1))
    assert result['failed'] and 'lease must be 0' in result['msg']
    result = run_module('maintenance', args(root, backups, 'on', release_lock=True))
    assert result['failed'] and 'go with state=off' in result['msg'], result
    assert not events(root)


def test_run_lock_creates_the_backup_directory_0700(tmp_path):
    """create=true makes the backup directory (0700, its parents too) or sets an existing one's mode, then takes the
    lock: what the roles do in one call. Check mode writes nothing; a file in the way is refused by name."""
    backups = tmp_path / 'srv' / 'backups'
    lock = dict(path=str(backups), token='run1', operation='backup', create=True)
    missing = run_module('run_lock', dict(lock, create=False))
    assert missing['failed'] and 'is not a directory' in missing['msg'] and not backups.parent.exists()
    would = run_module('run_lock', lock, check=True)
    assert not would.get('failed') and would['changed'] and would['directory_changed'], would
    assert not backups.parent.exists(), 'check mode created the directory'

    taken = run_module('run_lock', lock)
    assert not taken.get('failed') and taken['changed'] and taken['directory_changed'], taken
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700 and json.loads((backups / '.appvault-run.lock').read_text())['token'] == 'run1'
    again = run_module('run_lock', lock)  # renewed by the same run: nothing to change
    assert not again.get('failed') and not again['changed'] and again['directory_changed'] is False, again
    assert not run_module('run_lock', dict(path=str(backups), token='run1', state='absent')).get('failed')

    backups.chmod(0o755)
    opened = run_module('run_lock', dict(lock, token='run2'))
    assert not opened.get('failed') and opened['directory_changed'] and stat.S_IMODE(backups.stat().st_mode) == 0o700, opened

    blocker = tmp_path / 'file'
    blocker.write_text('keep me\n')
    refused = run_module('run_lock', dict(lock, path=str(blocker)))
    assert refused['failed'] and '%s exists and is not a directory' % blocker in refused['msg'], refused
    assert blocker.read_text() == 'keep me\n'
