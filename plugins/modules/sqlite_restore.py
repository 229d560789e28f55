#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: sqlite_restore
short_description: Restore one SQLite database file from a backup, checked before it replaces anything
version_added: 0.1.0
description:
  - Restores a backup written by M(appvault.backup.sqlite_dump) (zstd, gzip or an uncompressed database file,
    detected from the content).
  - Decompresses it into a temporary file beside O(path), runs C(PRAGMA integrity_check) on it and compares it with
    O(expected_inventory); a corrupt or mismatching backup is refused and nothing is changed.
  - Then replaces O(path) in one rename, with the owner and mode of the old file. The old file is kept as
    C(<path>.bak) (a hard link made before the rename) unless O(backup=false).
  - An existing database in WAL mode is checkpointed first so the C(.bak) file is complete; when the WAL cannot be
    checkpointed because the database is in use, the module fails. Stop the application before a restore.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Checks the backup (decompression and integrity check in a temporary file, removed again) and reports
      what would change.
  diff_mode:
    support: none
options:
  path:
    description:
      - Path of the SQLite database file to restore. Its directory must exist.
    type: path
    required: true
  src:
    description:
      - Path of the backup file.
    type: path
    required: true
  backup:
    description:
      - Keep the replaced database as C(<path>.bak) (an existing C(.bak) is replaced).
    type: bool
    default: true
  expected_inventory:
    description:
      - The inventory recorded at backup time (the RV(appvault.backup.sqlite_dump#module:inventory) return value).
        The restored file's inventory and row counts must equal it, or the module fails listing the differences and
        changes nothing. Keys starting with C(_) are not compared.
    type: dict
  checksums:
    description:
      - Also compute per-table content checksums of the restored file (compared when O(expected_inventory) holds
        C(checksums)).
    type: bool
    default: false
seealso:
  - module: appvault.backup.sqlite_dump
'''

EXAMPLES = r'''
- name: Restore the application's SQLite database, verified against the inventory taken at backup time
  appvault.backup.sqlite_restore:
    path: /var/lib/myapp/app.sqlite
    src: /var/backups/appvault/app.sqlite.zst
    expected_inventory: "{{ dump.inventory }}"
'''

RETURN = r'''
source:
  description: The backup restored.
  returned: always
  type: dict
  contains:
    path:
      description: Path of the backup.
      type: str
      sample: /var/backups/appvault/app.sqlite.zst
    size:
      description: Size in bytes.
      type: int
      sample: 1048576
    sha256:
      description: SHA-256 of the backup.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    compression:
      description: C(zstd), C(gzip) or C(none).
      type: str
      sample: zstd
database_created:
  description: Whether O(path) did not exist before.
  returned: always
  type: bool
  sample: false
backup_file:
  description: Path of the kept old database, when there was one and O(backup=true).
  returned: success, not in check mode
  type: str
  sample: /var/lib/myapp/app.sqlite.bak
duration:
  description: Seconds the restore took.
  returned: success, not in check mode
  type: float
  sample: 0.5
server_version:
  description: Version of the SQLite library used.
  returned: always
  type: str
  sample: "3.40.1"
flavour:
  description: Always C(sqlite).
  returned: always
  type: str
  sample: sqlite
tool_version:
  description: Version of the SQLite library used.
  returned: always
  type: str
  sample: "3.40.1"
commands:
  description: The decompression command run, if any.
  returned: always
  type: list
  elements: str
  sample: ["/usr/bin/zstd -dc -q"]
inventory:
  description: Inventory of the restored database (see M(appvault.backup.sqlite_dump)).
  returned: success, not in check mode
  type: dict
  sample: {"rows": {"notes": 3}}
verified:
  description: Whether the restored database matched O(expected_inventory). C(null) when none was given.
  returned: success, not in check mode
  type: bool
  sample: true
differences:
  description: Differences from O(expected_inventory), when the backup did not match it.
  returned: failure
  type: list
  elements: str
  sample: ["rows.notes: expected 3, found 2"]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _sqlite


def argument_spec():
    return _sqlite.restore_argument_spec()


def run(module):
    return _sqlite.run_restore(module.params, module.check_mode)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
