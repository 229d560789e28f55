#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: migrate_verify
short_description: Compare a migrated environment with the manifest of the archive it came from
version_added: 0.1.0
description:
  - Reads the manifest of O(archive) (the source's backup) and compares the environment O(app) on this host with it.
  - Each database - its object inventory and exact row counts, and per-table content checksums when the source
    recorded them (O(checksums)), read from the running server the same way the dump modules record them.
  - Each path - every entry's type, mode, owner, group, size and sha256 against the archive's members, and the
    counts of files and bytes on both sides. O(exclude) leaves entries out (C(<path id>/<relative path>) patterns).
  - The trees are read and hashed in a thread of their own while the database servers compute their checksums.
  - Returns one row per database and path and a printable RV(table); fails when anything differs, with the rows.
  - Used by the migrate role after the restore role has restored the target.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.app
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Only reads; runs the same in check mode.
  diff_mode:
    support: none
options:
  archive:
    description:
      - The archive whose manifest is the reference (only its first member, the manifest, is read).
    type: path
    required: true
  checksums:
    description:
      - Compare per-table content checksums (when the source recorded them).
    type: bool
    default: true
  exclude:
    description:
      - Glob patterns of path entries not compared, as C(<path id>/<relative path>), for files the app's own commands
        change after a restore (a maintenance flag file, for example).
    type: list
    elements: str
    default: []
  identity:
    description:
      - age identity file for an encrypted archive.
    type: path
seealso:
  - module: appvault.backup.archive_restore
'''

EXAMPLES = r'''
- name: Verify the migrated target
  appvault.backup.migrate_verify:
    archive: /var/backups/appvault/exment-20241201T030000Z-migrate.tar.zst
    app: "{{ target_app }}"
    exclude: [storage/framework/down]
  no_log: true
  register: verified
'''

RETURN = r'''
equal:
  description: Whether everything compared was equal.
  returned: always
  type: bool
  sample: true
rows:
  description:
    - One per database and path - C(kind) (database, path), C(id), C(source) and C(target) summaries (tables and rows,
      or files and bytes), C(compared) (what was compared), C(equal) and up to ten C(differences).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "path", "id": "storage", "source": "120 files, 1.5 MiB", "target": "120 files, 1.5 MiB",
            "compared": "entries, modes, owners, sizes, sha256", "equal": true, "differences": []}]
table:
  description: The rows as aligned text lines for the log.
  returned: always
  type: list
  elements: str
  sample: ["what          source                      target                      result",
           "database main 12 tables, 20412 rows, 12 checksums  12 tables, 20412 rows, 12 checksums  equal"]
source_host:
  description: The host name the archive was made on.
  returned: always
  type: str
  sample: app1
created_at:
  description: When the archive was made (UTC).
  returned: always
  type: str
  sample: "2024-12-01T03:00:00Z"
archive:
  description: The archive compared with.
  returned: always
  type: str
  sample: /var/backups/appvault/exment-20241201T030000Z-migrate.tar.zst
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _appdef, _common, _migrate
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def argument_spec():
    return dict(
        archive=dict(type='path', required=True),
        app=dict(type='dict', required=True, options=_appdef.argument_spec()),
        checksums=dict(type='bool', default=True),
        exclude=dict(type='list', elements='str', default=[]),
        identity=dict(type='path'),
    )


def run(module):
    p = module.params
    result = _migrate.verify(p['archive'], p['app'], checksums=p['checksums'], exclude=p['exclude'], identity=p['identity'])
    if not result['equal']:
        raise AppvaultError('the target differs from the source\'s manifest: %s' % '; '.join(
            '%s %s: %s' % (row['kind'], row['id'], ', '.join(row['differences'][:3])) for row in result['rows'] if not row['equal']),
            **dict((k, v) for k, v in result.items() if k != 'changed'))
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
