#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: maintenance
short_description: Switch an application's maintenance mode on with a host-side lease, or off
version_added: 0.2.0
description:
  - O(state=on) arms a timer on the host, then runs the application's O(maintenance_on) commands. The timer is a detached
    process that runs the O(maintenance_off) commands when O(lease) seconds have passed, unless O(state=off) disarmed it first.
    So when the controller dies (killed, its connection lost) while the application is in maintenance, the
    application leaves maintenance by itself once the lease ends.
  - O(state=off) disarms the timer and runs the O(maintenance_off) commands. When one of them fails, the module
    fails and arms the timer again for a short time (30 seconds, or the lease when shorter), so the host runs the
    O(maintenance_off) commands once more by itself (RV(retry)).
  - O(state=off) can also end the run it belongs to, so that a role needs no further module call for it. O(release_lock)
    releases the run lock of O(token), whether or not the commands succeeded, and O(remove_snapshot) deletes the
    restore's safety snapshot once maintenance is off (the disarmed lease no longer needs it for a rollback).
  - The lease is recorded in C(<path>/.appvault-maintenance.json) (mode 0600, next to the run lock of
    M(appvault.backup.run_lock)). A lease left by an earlier run with another O(token) is taken over (its timer
    stopped) and reported in RV(took_over). When a timer fired, the next call reports it in RV(expired_earlier).
  - When an O(maintenance_on) command fails, the O(maintenance_off) commands are run to undo what ran, no timer is left, and the module fails.
  - Commands are argument lists, run without a shell in O(chdir). With O(owner) they run as that user (the module
    must then run as root, for example with C(become)); so does the timer.
  - The timer needs no systemd; it does not survive a reboot of the host.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would be done (and a lease that would be taken over); runs nothing.
  diff_mode:
    support: none
options:
  state:
    description:
      - V(on) arms the lease and switches maintenance on; V(off) disarms it and switches maintenance off. Quote
        them in YAML (V('on')), where a bare on or off is a boolean.
    type: str
    choices: ['on', 'off']
    required: true
  path:
    description:
      - The directory the lease is recorded in (the backup directory). It must exist.
    type: path
    required: true
  token:
    description:
      - Identifies the run (the roles use the run lock's token). O(state=on) again with the same token renews the lease.
    type: str
    required: true
  maintenance_on:
    description:
      - The maintenance_on commands, each an argument list, run in order.
    type: list
    elements: list
    default: []
  maintenance_off:
    description:
      - The maintenance_off commands, each an argument list, run in order (by O(state=off), by the timer, and to undo
        a failed O(state=on)).
    type: list
    elements: list
    default: []
  lease:
    description:
      - Seconds after which the timer switches maintenance off, counted from the later of this call and the last
        renewal (M(appvault.backup.job_wait) with O(appvault.backup.job_wait#module:renew_lease) renews it while it waits
        for a long step). Longer than the longest step you expect. V(0) arms no timer.
    type: int
    default: 3600
  chdir:
    description:
      - The directory the commands run in (the application's root).
    type: path
  owner:
    description:
      - The user the commands run as. Unset runs them as the module's user.
    type: str
  rollback:
    description:
      - With O(state=on), the rollback plan of a restore whose safety snapshot exists. When the lease ends before
        O(state=off) disarmed it (the controller died in the middle of the restore), the timer first puts the snapshot
        back - the paths swapped in, the current ones moved aside, and every database restored and verified, as the
        restore role's rescue does - and only then runs O(maintenance_off). If that fails, maintenance stays on (a half
        restored application is never served) and the next call of this module reports why.
      - Set it with a second O(state=on) with the same O(token) and no O(maintenance_on) commands once the snapshot is
        written. The restore role has M(appvault.backup.backup_restore) arm the same plan instead
        (O(appvault.backup.backup_restore#module:rollback_lease)), one module call fewer. The plan, with the database
        passwords, is kept in the 0600 lease file in O(path) and never returned. Needs O(lease) above V(0); run the
        module as the user the restore runs as.
    type: dict
    suboptions:
      snapshot:
        description: The safety snapshot archive to put back.
        type: path
        required: true
      app:
        description:
          - The resolved application definition (filter P(appvault.backup.app_definition#filter)), best without its
            databases' C(login_password) values (give them in O(rollback.passwords)).
        type: dict
        required: true
      passwords:
        description:
          - The databases' passwords by database id, merged into O(rollback.app) on the host; kept apart so that Ansible
            masks them (and only them) in its output and logs.
        type: dict
        default: {}
      keep_previous:
        description: How many copies moved aside by restores stay per path (as in M(appvault.backup.archive_restore)).
        type: int
      in_use:
        description:
          - What the restore's own jobs read and write (the archive being restored, the directory its dumps are
            extracted to). A job the dead controller started runs to its end on the host; the timer waits until no
            process has a file open at or under these paths before it puts the snapshot back.
        type: list
        elements: path
        default: []
  release_lock:
    description:
      - With O(state=off), also release the run lock that O(token) holds in O(path), as M(appvault.backup.run_lock) with
        O(appvault.backup.run_lock#module:state=absent) does, after the O(maintenance_off) commands, and also when one of
        them failed (the failure is reported after it), so a failing command never keeps the lock. A lock held by another
        run is left alone, with a warning. RV(lock_released) says what was done.
    type: bool
    default: false
  remove_snapshot:
    description:
      - With O(state=off), a backup to delete with its sidecars once maintenance is off, as
        M(appvault.backup.backup_file) with O(appvault.backup.backup_file#module:state=absent) does, for the
        safety snapshot of a restore that succeeded. Until the lease is disarmed its timer could still need it, so it is kept
        when an O(maintenance_off) command fails. A missing file is not an error.
    type: path
seealso:
  - module: appvault.backup.run_lock
  - module: appvault.backup.backup_file
'''

EXAMPLES = r'''
- name: Maintenance on, leaving it by itself after two hours if this play dies
  appvault.backup.maintenance:
    state: 'on'
    path: /var/backups/appvault
    token: "{{ run_token }}"
    maintenance_on: [[php, artisan, down]]
    maintenance_off: [[php, artisan, up]]
    lease: 7200
    chdir: /var/www/exment
    owner: www-data
  become: true

- name: Maintenance off, the run lock released, and the safety snapshot removed when the restore succeeded
  appvault.backup.maintenance:
    state: 'off'
    path: /var/backups/appvault
    token: "{{ run_token }}"
    maintenance_off: [[php, artisan, up]]
    chdir: /var/www/exment
    owner: www-data
    release_lock: true
    remove_snapshot: "{{ snapshot.path if restore_succeeded else omit }}"
  become: true
'''

RETURN = r'''
state:
  description: The state asked for.
  returned: always
  type: str
  sample: 'on'
commands:
  description: Each command run, with its exit status and output.
  returned: always
  type: list
  elements: dict
  sample: [{"cmd": ["php", "artisan", "down"], "rc": 0, "stdout": "Application is now in maintenance mode.", "stderr": ""}]
lease:
  description: The armed timer (V(null) with O(lease=0)).
  returned: when O(state=on)
  type: dict
  sample: {"pid": 4711, "expires": 1767243600, "seconds": 3600, "rollback": null}
disarmed:
  description: Whether a timer was disarmed.
  returned: when O(state=off)
  type: bool
lock_released:
  description:
    - Whether the run lock of O(token) was released (V(false) when there was none, or another run holds it).
  returned: when O(state=off) and O(release_lock=true), also when the module failed
  type: bool
snapshot_removed:
  description: The files deleted for O(remove_snapshot) (the archive and its sidecars; empty when it was already gone).
  returned: when O(state=off) and O(remove_snapshot) is set and maintenance is off
  type: list
  elements: str
  sample: ["/var/backups/appvault/exment-20260101T030000Z-pre-restore.tar.zst", "/var/backups/appvault/exment-20260101T030000Z-pre-restore.tar.zst.sha256"]
took_over:
  description: The lease of an earlier run that was taken over.
  returned: when one was found
  type: dict
retry:
  description: The timer armed again after an O(maintenance_off) command failed (V(null) when no timer was armed before).
  returned: when O(state=off) failed
  type: dict
  sample: {"pid": 4712, "expires": 1767243630, "seconds": 30}
expired_earlier:
  description: A lease that had already expired, and what its timer did.
  returned: when a timer fired
  type: str
  sample: the maintenance lease of run a1b2 expired at 2026-01-01T05:00:00Z and maintenance was switched off by the host-side timer
'''


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _maintenance, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def argument_spec():
    return {
        'state': dict(type='str', choices=['on', 'off'], required=True),
        'path': dict(type='path', required=True),
        'token': dict(type='str', required=True, no_log=False),
        'maintenance_on': dict(type='list', elements='list', default=[]),
        'maintenance_off': dict(type='list', elements='list', default=[]),
        'lease': dict(type='int', default=3600),
        'chdir': dict(type='path'),
        'owner': dict(type='str'),
        'rollback': dict(type='dict', options=dict(
            snapshot=dict(type='path', required=True),
            app=dict(type='dict', required=True),
            passwords=dict(type='dict', no_log=True, default={}),
            keep_previous=dict(type='int'),
            in_use=dict(type='list', elements='path', default=[]),
        )),
        'release_lock': dict(type='bool', default=False),
        'remove_snapshot': dict(type='path'),
    }


def commands(value, name):
    out = []
    for argv in value:
        if not argv or not all(isinstance(word, (str, int, float)) for word in argv):
            raise AppvaultError('%s: each command is a non-empty list of words, got %r' % (name, argv))
        out.append([str(word) for word in argv])
    return out


def run(module):
    p = module.params
    off = commands(p['maintenance_off'], 'maintenance_off')
    if p['state'] == 'on' and (p['release_lock'] or p['remove_snapshot']):
        raise AppvaultError('release_lock and remove_snapshot end a run: they go with state=off, not state=on')
    try:
        if p['state'] == 'on':
            on = commands(p['maintenance_on'], 'maintenance_on')
            rollback = p['rollback']
            if rollback:
                rollback = _maintenance.rollback_plan(rollback['snapshot'], rollback['app'], p['token'],
                                                      keep_previous=rollback['keep_previous'], in_use=rollback['in_use'],
                                                      passwords=rollback['passwords'])
            lease = _maintenance.Lease(p['path'], p['token'])
            result = lease.on(on, off, p['lease'], chdir=p['chdir'], owner=p['owner'], check_mode=module.check_mode,
                              rollback=rollback)
        else:
            result = _maintenance.end_run(p['path'], p['token'], off, chdir=p['chdir'], owner=p['owner'],
                                          release_lock=p['release_lock'], remove_snapshot=p['remove_snapshot'],
                                          check_mode=module.check_mode, warn=module.warn)
    except _runner.CommandError as exc:
        raise AppvaultError(exc.msg)
    if result.get('expired_earlier'):
        module.warn(result['expired_earlier'])
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
