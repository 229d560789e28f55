#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: sqlite_dump
short_description: Back up one SQLite database file with the online backup API, atomically and with its inventory
version_added: 0.1.0
description:
  - Copies the database with SQLite's online backup API (Python's C(sqlite3) module), in one step, so the copy is
    one consistent snapshot even while the application keeps writing (in WAL mode writers are not blocked; with a
    rollback journal they wait for the copy).
  - Checks the copy with C(PRAGMA quick_check), then compresses it with C(zstd -T<cores> -3) by default (or gzip,
    or not at all) as a separate process, to a hidden C(.partial) name beside O(dest) that is fsynced and renamed to
    O(dest) with mode 0600. Nothing is left behind on failure.
  - Returns the artefact's size and sha256 and the inventory of the copy (tables, indexes, views, triggers with
    their SQL, exact row counts), which M(appvault.backup.sqlite_restore) verifies against.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Checks the database file and the destination and reports what would run; writes nothing.
  diff_mode:
    support: none
options:
  path:
    description:
      - Path of the SQLite database file.
    type: path
    required: true
  dest:
    description:
      - Path of the backup file. Its parent directory must exist.
    type: path
    required: true
  force:
    description:
      - Replace O(dest) when it exists. Without it an existing O(dest) is an error and nothing is touched.
    type: bool
    default: false
  compression:
    description:
      - Compression of the backup.
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  compression_level:
    description:
      - Compression level. Defaults to 3 for zstd and 1 for gzip.
    type: int
  inventory:
    description:
      - Return the inventory (objects with their SQL, exact row counts) of the copy.
    type: bool
    default: true
  checksums:
    description:
      - Also return a per-table content checksum (row count and an order-independent sum of row hashes).
    type: bool
    default: false
requirements:
  - C(zstd) or C(gzip) on the managed host for compression.
seealso:
  - module: appvault.backup.sqlite_restore
  - name: SQLite Online Backup API
    description: How the online backup works.
    link: https://www.sqlite.org/backup.html
'''

EXAMPLES = r'''
- name: Back up an application's SQLite database
  appvault.backup.sqlite_dump:
    path: /var/lib/myapp/app.sqlite
    dest: /var/backups/appvault/app.sqlite.zst
  register: dump
'''

RETURN = r'''
artefact:
  description: The backup written.
  returned: success, not in check mode
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
      description: SHA-256 of the file.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    type:
      description: Always C(file).
      type: str
      sample: file
compression:
  description: Compression applied.
  returned: always
  type: dict
  sample: {"method": "zstd", "level": 3, "how": "pipe"}
duration:
  description: Seconds the backup took.
  returned: success, not in check mode
  type: float
  sample: 0.5
server_version:
  description: Version of the SQLite library that made the copy.
  returned: always
  type: str
  sample: "3.40.1"
flavour:
  description: Always C(sqlite).
  returned: always
  type: str
  sample: sqlite
tool_version:
  description: Version of the SQLite library that made the copy.
  returned: always
  type: str
  sample: "3.40.1"
commands:
  description: What ran (the online backup and the compression command).
  returned: always
  type: list
  elements: str
  sample: ["sqlite3 online backup /var/lib/myapp/app.sqlite", "/usr/bin/zstd -q -T2 -3 -c"]
inventory:
  description: Tables, indexes, views and triggers with their SQL, and C(rows), the row count of every table
    (C(checksums) when O(checksums=true)).
  returned: success, when O(inventory=true) and not in check mode
  type: dict
  sample: {"tables": {"notes": {"sql": "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"}}, "rows": {"notes": 3}}
'''


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _sqlite


def argument_spec():
    return _sqlite.dump_argument_spec()


def run(module):
    return _sqlite.run_dump(module.params, check_mode=module.check_mode, warn=module.warn)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
