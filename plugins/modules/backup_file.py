#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_file
short_description: Rename, delete, pin or unpin one backup
version_added: 0.1.0
description:
  - Renames a backup. The new name may hold ASCII letters, digits, C(-), C(_) and C(.) only, must not start with
    C(.) or C(-) and must not contain a path separator (half-width kana, full-width characters, spaces and other
    symbols are refused, as in Exment's own backup screen). The archive suffix (C(.tar.zst) ...) is kept and added
    when the new name lacks it. An existing file is never overwritten.
  - Deletes a backup (O(state=absent)); a pinned one only with O(force=true).
  - Pins or unpins a backup. A pinned backup has a C(<archive>.pin) marker file and is never removed by
    M(appvault.backup.backup_prune).
  - Sidecars (C(.sha256), whose line is rewritten for the new name, C(.manifest.json), C(.pin)) follow their archive.
  - Works under the backup directory's lock file; a lock left by a dead process is taken over.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Validates and reports what would change; changes nothing.
  diff_mode:
    support: none
options:
  path:
    description:
      - The archive, as a path or as a file name inside O(backup_dir).
    type: path
    required: true
  backup_dir:
    description:
      - Backup directory O(path) is relative to when it is a bare name.
    type: path
  state:
    description:
      - V(absent) deletes the backup and its sidecars.
    type: str
    choices: [present, absent]
    default: present
  rename_to:
    description:
      - New file name.
    type: str
  pinned:
    description:
      - Pin (V(true)) or unpin (V(false)) the backup.
    type: bool
  force:
    description:
      - Delete a pinned backup.
    type: bool
    default: false
seealso:
  - module: appvault.backup.backup_info
  - module: appvault.backup.backup_prune
'''

EXAMPLES = r'''
- name: Keep the backup taken before the upgrade, under a telling name
  appvault.backup.backup_file:
    backup_dir: /var/backups/appvault
    path: exment-20250101T030000Z.tar.zst
    rename_to: exment-before-6.2-upgrade
    pinned: true

- name: Delete a backup
  appvault.backup.backup_file:
    path: /var/backups/appvault/exment-20241201T030000Z.tar.zst
    state: absent
'''

RETURN = r'''
path:
  description: Path of the backup after the operation.
  returned: always
  type: str
  sample: /var/backups/appvault/exment-before-6.2-upgrade.tar.zst
name:
  description: File name of the backup after the operation.
  returned: always
  type: str
  sample: exment-before-6.2-upgrade.tar.zst
previous_path:
  description: Path before a rename.
  returned: when renamed
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst
pinned:
  description: Whether the backup is pinned.
  returned: when O(state=present)
  type: bool
  sample: true
removed:
  description: Files removed by O(state=absent).
  returned: when deleted
  type: list
  elements: str
  sample: [/var/backups/appvault/exment-20241201T030000Z.tar.zst, /var/backups/appvault/exment-20241201T030000Z.tar.zst.sha256]
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def argument_spec():
    return dict(
        path=dict(type='path', required=True),
        backup_dir=dict(type='path'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        rename_to=dict(type='str'),
        pinned=dict(type='bool'),
        force=dict(type='bool', default=False),
    )


def run(module):
    p = module.params
    path = p['path']
    if '/' not in path:
        if not p['backup_dir']:
            raise AppvaultError('path %r is a bare name: give backup_dir too, or a full path' % path)
        path = os.path.join(p['backup_dir'], path)
    return _catalog.manage(os.path.abspath(path), state=p['state'], rename_to=p['rename_to'], pinned=p['pinned'],
                           force=p['force'], check_mode=module.check_mode, warn=module.warn)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[('state', 'rename_to'), ('state', 'pinned')])
    _common.finish(module, run)


if __name__ == '__main__':
    main()
