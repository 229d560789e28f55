# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Maintenance mode with a host-side lease.

Switching maintenance on arms a timer on the host before the app's maintenance_on commands run: a detached
process that runs the maintenance_off commands when the lease ends, unless switching maintenance off disarmed it
first. So an app never stays down because the controller died (killed, lost its connection) between on and off.

The timer is recorded in ``<backup dir>/.appvault-maintenance.json`` (0600, next to the run lock): its token, pid,
the pid's start time (so a reused pid is never taken for it), when it fires, and the commands it runs. Whoever
renames that file away first owns the outcome: the timer (to fire) or maintenance off (to disarm), so the two never
both act on one lease. When the timer fired, it leaves ``.appvault-maintenance.fired.json`` with what it ran; the
next maintenance call reports it.

The lease counts from the controller's last sign of life: appvault.backup.job_wait (``renew_lease``) touches the state
file at every check while it waits for a long step, and the timer fires ``lease`` seconds after the later of that
mtime and the arming.

A restore records a rollback plan in the lease once its safety snapshot exists (``rollback``: the snapshot and the
resolved application). If the timer fires with a plan, the controller died in the middle of the restore: the
timer puts the snapshot back first (paths and databases, as the restore role's rescue does) and only then switches
maintenance off, so an app is never served half restored. A job of the restore that the dead controller started
(an extraction, a database restore) runs to its end first: the timer waits while a process has one of the plan's
``in_use`` paths open. If that rollback fails, maintenance stays on and the
fired record says why.

When switching maintenance off fails, the timer is armed again (at most OFF_RETRY seconds, never longer than the
lease): the host runs the maintenance_off commands once more by itself, so a passing failure (a busy service manager,
a lock) does not leave the app down until someone notices.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

STATE_NAME = '.appvault-maintenance.json'
FIRED_NAME = '.appvault-maintenance.fired.json'
TIMER_POLL = 2.0  # seconds between the timer's checks that its lease still stands
OFF_RETRY = 30  # seconds after a failed maintenance off at which the re-armed timer runs maintenance_off again


def _rollback_code():
    """_hostrun, which puts a snapshot back (every engine's restore): only a rollback plan needs it, so a call without
    one does not load it. _arm loads it before it forks a timer with a plan, because the module's own files are gone
    by the time that timer fires."""
    from ansible_collections.appvault.backup.plugins.module_utils import _hostrun
    return _hostrun


def rollback_plan(snapshot, app, token, keep_previous=None, in_use=(), passwords=None):
    """The rollback plan a restore's lease holds (see Lease.on): ``snapshot`` must be a file, ``app`` a resolved
    application definition; ``passwords`` ({database id: password}) are merged into its databases (the plan lives in
    the 0600 lease file only)."""
    if not os.path.isfile(snapshot):
        raise AppvaultError('rollback.snapshot %s is not a file' % snapshot)
    if not all(isinstance(app.get(key), list) for key in ('databases', 'paths')):
        raise AppvaultError('rollback.app must be a resolved application definition (with databases and paths)')
    if passwords:
        app = dict(app, databases=[dict(db, login_password=passwords[db.get('id')]) if passwords.get(db.get('id')) else db
                                   for db in app['databases']])
    return dict(snapshot=os.path.abspath(snapshot), app=app, keep_previous=keep_previous,
                in_use=[os.path.abspath(path) for path in in_use], token=token)


def _proc_start(pid):
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/<pid>/stat), or None when it is gone."""
    try:
        with open('/proc/%d/stat' % pid) as fileobj:
            text = fileobj.read()
    except OSError:
        return None
    return int(text.rsplit(')', 1)[1].split()[19])


def _write_json(path, data):
    temp = '%s.%d.tmp' % (path, os.getpid())
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as fileobj:
        json.dump(data, fileobj, sort_keys=True)
        fileobj.flush()
        os.fsync(fileobj.fileno())
    os.rename(temp, path)
    _common.fsync_dir(os.path.dirname(path))


def _read_json(path):
    try:
        with open(path) as fileobj:
            data = json.load(fileobj)
    except FileNotFoundError:
        return None
    except ValueError:
        return {'unreadable': True}
    return data if isinstance(data, dict) else {'unreadable': True}


def run_commands(commands, chdir=None, user=None):
    """Run each argv list in order, stop at the first failure; return (results, error message or None)."""
    results = []
    for argv in commands:
        try:
            res = _runner.run(argv, cwd=chdir or None, user=user)
        except _runner.CommandError as exc:
            stage = exc.stages[-1] if exc.stages else {}
            results.append(dict(cmd=list(argv), rc=stage.get('rc', -1), stdout=stage.get('stdout', ''), stderr=stage.get('stderr', exc.msg)))
            return results, '%s: %s' % (' '.join(argv), exc.msg)
        results.append(dict(cmd=list(argv), rc=res['rc'], stdout=res.get('stdout', '').strip(), stderr=res.get('stderr', '')))
    return results, None


class Lease(object):
    """The maintenance lease of one backup directory."""

    def __init__(self, directory, token):
        if not token:
            raise AppvaultError('maintenance needs a token (one per run)')
        if not os.path.isdir(directory):
            raise AppvaultError('%s is not a directory; the maintenance lease is recorded in the backup directory' % directory)
        self.directory = directory
        self.token = token
        self.path = os.path.join(directory, STATE_NAME)
        self.fired_path = os.path.join(directory, FIRED_NAME)

    # -- the timer --------------------------------------------------------------------------------------------
    def _timer(self, arm_id):
        """The detached timer's body: wait for the lease to end (counted from the last renewal), then claim the state
        file, put the snapshot back when the lease holds a rollback plan, and switch maintenance off."""
        while True:
            state = _read_json(self.path)
            if not state or state.get('arm_id') != arm_id:
                return  # disarmed, or another lease replaced this one
            try:
                renewed = os.stat(self.path).st_mtime
            except FileNotFoundError:
                return
            left = max(state['expires'], renewed + state['lease']) - time.time()
            # A job the dead controller started (an extraction, a database restore) runs to its end on the host:
            # the snapshot goes back only once nothing of the restore is open any more.
            if left <= 0 and not (state.get('rollback') and _rollback_code().open_under(state['rollback'].get('in_use') or [])):
                break
            time.sleep(min(left, TIMER_POLL) if left > 0 else TIMER_POLL)
        claimed = '%s.firing-%d' % (self.path, os.getpid())
        try:
            os.rename(self.path, claimed)
        except FileNotFoundError:
            return  # maintenance off won the race
        fired = dict(public(state), fired_at=time.time(), results=[], error=None)
        if state.get('rollback'):
            try:
                fired['rollback'].update(_rollback_code().restore_snapshot(state['rollback']), error=None)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                # recorded, and maintenance stays on
                fired['rollback']['error'] = getattr(exc, 'msg', None) or '%s: %s' % (type(exc).__name__, exc)
        if not (fired.get('rollback') or {}).get('error'):
            fired['results'], fired['error'] = run_commands(state.get('off') or [], state.get('chdir'), state.get('owner'))
        _write_json(self.fired_path, fired)
        os.unlink(claimed)

    def _arm(self, off, lease, chdir, owner, rollback=None):
        if rollback:
            _rollback_code()  # loaded now, while the module's files exist: the forked timer finds it in sys.modules
        expires = time.time() + lease
        # The timer knows its lease by arm_id: written before it starts, so it stands even if this process dies
        # before the timer's pid is recorded (then a disarm stops it by renaming the file; it notices within
        # TIMER_POLL seconds).
        arm_id = '%s-%d-%.6f' % (self.token, os.getpid(), time.time())
        state = dict(token=self.token, arm_id=arm_id, host=socket.gethostname(), armed_at=int(time.time()), expires=int(expires),
                     lease=lease, off=off, chdir=chdir, owner=owner, pid=None, pid_start=None, rollback=rollback)
        _write_json(self.path, state)
        pid = _runner.detach(lambda: self._timer(arm_id))
        state.update(pid=pid, pid_start=_proc_start(pid))
        _write_json(self.path, state)
        return state

    def _disarm(self, state):
        """Stop a recorded timer (if it is still the same process); True when this call took the lease away."""
        claimed = '%s.disarm-%d' % (self.path, os.getpid())
        try:
            os.rename(self.path, claimed)
        except FileNotFoundError:
            return False
        pid = state.get('pid')
        if pid and state.get('pid_start') is not None and _proc_start(int(pid)) == state.get('pid_start'):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
        os.unlink(claimed)
        _common.fsync_dir(self.directory)
        return True

    def _take_fired(self):
        """The record of a timer that fired (and remove it), or None."""
        fired = _read_json(self.fired_path)
        if fired is not None:
            os.unlink(self.fired_path)
        return fired

    def expired(self):
        """How this run's lease expired (describe_fired), when its timer fired; None while it is armed or unused."""
        fired = _read_json(self.fired_path)
        return self.describe_fired(fired) if fired is not None and fired.get('token') == self.token else None

    @staticmethod
    def describe_fired(fired):
        if fired.get('unreadable'):
            return 'a maintenance lease expired earlier (its record is unreadable)'
        text = 'the maintenance lease of run %s expired at %s and maintenance was switched off by the host-side timer' % (
            fired.get('token'), time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(fired.get('fired_at') or 0)))
        rollback = fired.get('rollback') or {}
        if rollback.get('error'):
            text = text.replace('maintenance was switched off', 'the restore it guarded was unfinished')
            text += '; putting the safety snapshot %s back failed, so maintenance was left on: %s' % (rollback.get('snapshot'), rollback['error'])
        elif rollback:
            text += ', after it had put the safety snapshot %s back (the restore it guarded was unfinished)' % rollback.get('snapshot')
        if fired.get('error'):
            text += ', but maintenance_off failed: %s' % fired['error']
        return text

    # -- the two states -----------------------------------------------------------------------------------------
    def on(self, on_cmds, off_cmds, lease, chdir=None, owner=None, check_mode=False, rollback=None):
        if lease < 0:
            raise AppvaultError('lease must be 0 (no timer) or more seconds, got %d' % lease)
        if rollback and not lease:
            raise AppvaultError('a rollback plan needs a lease: the host-side timer is what puts the snapshot back')
        result = dict(changed=True, state='on', commands=[], lease=None)
        current = _read_json(self.path)
        if current is not None and current.get('token') != self.token:
            # A lease of an earlier run whose controller died: this run (which holds the run lock) takes over, or its
            # timer would switch maintenance off in the middle of this run.
            result['took_over'] = public(current)
        fired = _read_json(self.fired_path)
        if fired is not None:
            result['expired_earlier'] = self.describe_fired(fired)
        if check_mode:
            return result
        if fired is not None:
            self._take_fired()
        if current is not None:
            self._disarm(current)
        if lease:
            state = self._arm(off_cmds, lease, chdir, owner, rollback)
            result['lease'] = dict(pid=state['pid'], expires=state['expires'], seconds=lease,
                                   rollback=rollback['snapshot'] if rollback else None)
        results, error = run_commands(on_cmds, chdir, owner)
        result['commands'] = results
        if error:
            # Half on is worse than off: undo what ran, and leave no timer behind.
            state = _read_json(self.path)
            if state is not None:
                self._disarm(state)
            undo, undo_error = run_commands(off_cmds, chdir, owner)
            raise AppvaultError('maintenance_on failed: %s; maintenance_off was run to undo it%s'
                                % (error, (' and failed too: %s' % undo_error) if undo_error else ''),
                                commands=results, undo=undo)
        return result

    def off(self, off_cmds, chdir=None, owner=None, check_mode=False):
        result = dict(changed=True, state='off', commands=[], disarmed=False)
        current = _read_json(self.path)
        fired = _read_json(self.fired_path)
        if fired is not None and fired.get('token') == self.token:
            result['expired_earlier'] = self.describe_fired(fired)
        if check_mode:
            result['disarmed'] = current is not None
            return result
        if current is not None:
            result['disarmed'] = self._disarm(current)
        if fired is not None and fired.get('token') == self.token:
            self._take_fired()
        results, error = run_commands(off_cmds, chdir, owner)
        result['commands'] = results
        if error:
            retry = None
            if current is not None and not current.get('unreadable') and result['disarmed']:
                seconds = max(1, min(int(current.get('lease') or OFF_RETRY), OFF_RETRY))
                state = self._arm(off_cmds, seconds, chdir, owner)
                retry = dict(pid=state['pid'], expires=state['expires'], seconds=seconds)
            raise AppvaultError('maintenance_off failed: %s; %s' % (
                error, ('the host-side timer was armed again: it runs maintenance_off once more in %d seconds' % retry['seconds'])
                if retry else 'no host-side timer runs it again (none was armed)'), commands=results, retry=retry)
        return result


def end_run(path, token, off_cmds, chdir=None, owner=None, release_lock=False, remove_snapshot=None, check_mode=False,
            warn=None):
    """Maintenance off for run ``token`` (Lease.off), then its run lock released (also when a maintenance_off command
    failed, which is raised after it) and the safety snapshot ``remove_snapshot`` removed (only once maintenance is
    off: until the lease is disarmed its timer could still need it). What the maintenance module does with state=off,
    and what a restore job does when nothing follows it (backup_restore's ``finish``). Returns Lease.off's result with
    ``lock_released`` and ``snapshot_removed`` when asked."""
    warn = warn or (lambda msg: None)
    failure = None
    try:
        result = Lease(path, token).off(off_cmds, chdir=chdir, owner=owner, check_mode=check_mode)
    except AppvaultError as exc:
        failure = exc
        result = exc.details
    if release_lock:
        result['lock_released'] = _catalog.RunLock(path, token).release(check_mode=check_mode, warn=warn)['changed']
    if failure is not None:
        raise failure
    if remove_snapshot:
        removed = _catalog.manage(os.path.abspath(remove_snapshot), state='absent', check_mode=check_mode, warn=warn)
        result['snapshot_removed'] = removed.get('removed', [])
    return result


def public(state):
    """``state`` without the rollback plan's application definition (which may hold database passwords)."""
    state = dict(state)
    if state.get('rollback'):
        state['rollback'] = dict((key, state['rollback'].get(key)) for key in ('snapshot', 'token'))
    return state


def status(directory):
    """The recorded lease of ``directory`` (or None, the rollback plan left out) and whether its timer still runs."""
    state = _read_json(os.path.join(directory, STATE_NAME))
    if state is None:
        return None
    state = public(state)
    pid = state.get('pid')
    state['alive'] = bool(pid) and _proc_start(int(pid)) == state.get('pid_start')
    return state
