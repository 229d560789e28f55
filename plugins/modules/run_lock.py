#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: run_lock
short_description: Take or release the lock that keeps backups, restores and migrations of one directory apart
version_added: 0.1.0
description:
  - Holds C(<path>/.appvault-run.lock) for a whole operation that spans many tasks. The roles take it with their
    preflight call (M(appvault.backup.app_preflight) with O(appvault.backup.app_preflight#module:lock), the same code)
    and release it in C(always:), so a manual backup, a scheduled one and a restore never overlap.
  - The lock is a lease identified by O(token). Taking it again with the same token renews the lease. Another token
    finds the lock held and fails with a message naming the operation, host and time that hold it.
  - A lock is stale when its lease has expired or, when it was taken with O(pid), that process no longer exists on
    this host. A stale lock is taken over, and RV(recovered) says whose it was; the work directories the dead run
    left in O(path) (C(.work-<token>), C(.restore-<token>)) are removed with it.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the lock could be taken or released; writes nothing.
  diff_mode:
    support: none
options:
  path:
    description:
      - The directory the lock protects (the backup directory). It must exist, unless O(create=true).
    type: path
    required: true
  create:
    description:
      - With O(state=present), create O(path) (mode 0700, with missing parents) when it does not exist, and set an
        existing one's mode to 0700, before taking the lock. The roles take their lock so, instead of a task of its own
        for the directory.
    type: bool
    default: false
  token:
    description:
      - Identifies the holder. Use one value per run (the roles use a random one).
    type: str
    required: true
  state:
    description:
      - V(present) takes or renews the lock, V(absent) releases it if this O(token) holds it (a lock held by someone
        else is left alone, with a warning).
    type: str
    choices: [present, absent]
    default: present
  operation:
    description:
      - What the holder does, shown to anyone who finds the lock held.
    type: str
    default: operation
  lease:
    description:
      - Seconds the lock stays valid without being renewed. V(0) means no expiry (then give O(pid)).
    type: int
    default: 3600
  pid:
    description:
      - A process on this host whose death makes the lock stale (the host-side runner passes its own).
    type: int
  break_lock:
    description:
      - Take the lock even though someone else holds it. Only for a holder known to be dead; the takeover is
        reported in RV(recovered).
    type: bool
    default: false
seealso:
  - module: appvault.backup.app_preflight
  - module: appvault.backup.backup_prune
'''

EXAMPLES = r'''
- name: Take the lock for this backup run, creating the backup directory (0700) if needed
  appvault.backup.run_lock:
    path: /var/backups/appvault
    create: true
    token: "{{ run_token }}"
    operation: backup
    lease: 7200

- name: Release it
  appvault.backup.run_lock:
    path: /var/backups/appvault
    token: "{{ run_token }}"
    state: absent
'''

RETURN = r'''
lock:
  description: The lock as written (V(null) once released).
  returned: always
  type: dict
  sample: {"token": "a1b2", "operation": "backup", "host": "app1", "pid": 0, "acquired": 1767236400, "expires": 1767243600}
directory_changed:
  description: Whether O(create=true) created O(path) or set its mode (in check mode, would have).
  returned: with O(create=true) and O(state=present)
  type: bool
  sample: true
recovered:
  description: The stale (or broken) lock that was taken over, described.
  returned: when a lock was taken over
  type: str
  sample: "backup on app1 since 2026-01-01T03:00:00Z, lease until 2026-01-01T05:00:00Z (lease expired at 2026-01-01T05:00:00Z)"
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def argument_spec():
    return dict(
        path=dict(type='path', required=True),
        create=dict(type='bool', default=False),
        token=dict(type='str', required=True, no_log=False),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        operation=dict(type='str', default='operation'),
        lease=dict(type='int', default=3600),
        pid=dict(type='int'),
        break_lock=dict(type='bool', default=False),
    )


def run(module):
    p = module.params
    if p['state'] == 'absent':
        if not os.path.isdir(p['path']):
            raise AppvaultError('%s is not a directory; the lock lives in the backup directory' % p['path'])
        return _catalog.RunLock(p['path'], p['token']).release(check_mode=module.check_mode, warn=module.warn)
    result = _catalog.take_run_lock(p['path'], p['token'], p['operation'], lease=p['lease'], pid=p['pid'],
                                    break_lock=p['break_lock'], create=p['create'], check_mode=module.check_mode)
    if result['recovered'] is None:
        del result['recovered']
    else:
        module.warn('took over a stale lock: %s' % result['recovered'])
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
