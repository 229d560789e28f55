#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: archive_create
short_description: Write one backup archive of database dumps and application files, streaming and atomically
version_added: 0.1.0
description:
  - Writes one archive C(<app>-<UTC yyyymmddThhmmssZ>[-label].tar.zst) (or C(.tar.gz)) into the backup directory.
    Its first member is C(manifest.json), followed by the database dumps as C(db/<id>.<ext>) and the files of
    each path as C(files/<id>/...). The format is described in C(docs/archive-format.md) of the collection.
  - The manifest records the application, host and OS, every database's engine, server and tool versions, options
    and object inventory with row counts (as given, typically the registered result of a dump module), every
    path's file count and bytes, and the type, mode, owner, mtime, size and sha256 of every member.
  - Files are hashed in a first pass while the tree is walked (large files by one thread per core), so the manifest
    can be the first member; GNU tar then archives exactly the walked entries and C(zstd -T<cores>) compresses.
    Python never holds file data in memory, and the member table is spooled to a private temporary file rather
    than kept in memory, so memory use does not grow with the number of files. A file that changes between the
    two passes fails the backup.
  - Owners, modes, mtimes, symlinks (stored as links, never followed), hardlinks and empty directories are kept.
    Sockets, FIFOs and device files are skipped with a warning.
  - Free space is checked against the sum of the input sizes before anything is written. The archive is written
    to a hidden C(.partial) name, fsynced and renamed, with mode 0600 in a 0700 directory; on any failure (a
    full disk included) nothing is left behind. A C(<archive>.sha256) sidecar in sha256sum format covers the file.
    What is on disk is dropped from the page cache as the archive grows, so a large backup does not push the host's
    working set out of memory.
  - With O(recipients) the archive is encrypted with C(age) (C(.tar.zst.age)); the manifest without the member
    table is then also written unencrypted as C(<archive>.manifest.json) so the catalogue can list it.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Walks the sources, checks names and free space and reports the archive that would be written.
  diff_mode:
    support: none
options:
  dest_dir:
    description:
      - The backup directory. Created with mode 0700 when missing. Ignored when O(dest) is set.
    type: path
  dest:
    description:
      - Explicit path of the archive instead of a generated name in O(dest_dir). Its name must pass the safe-name
        rules (ASCII letters, digits, C(-), C(_), C(.)).
    type: path
  label:
    description:
      - Label appended to the generated name, same safe-name rules.
    type: str
    aliases: [name]
  app:
    description:
      - The application backed up; recorded in the manifest.
    type: dict
    required: true
    suboptions:
      name:
        description: Application name; the first part of the archive name.
        type: str
        required: true
      profile:
        description: Profile (C(generic), C(exment), C(nocobase)).
        type: str
        default: generic
      version:
        description: Application version, for example the output of C(php artisan exment:version).
        type: str
  root:
    description:
      - Directory relative O(paths[].path) values are resolved against.
    type: path
  databases:
    description:
      - Database dumps to include, each stored as C(db/<id><ext>) where C(<ext>) is the suffix of the dump's name.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: Stable id of the database (safe-name rules); names the dump inside the archive.
        type: str
        required: true
      path:
        description: Absolute path of the dump file or dump directory.
        type: path
        required: true
      engine:
        description: Database engine, for example C(postgresql), C(mysql), C(mariadb), C(sqlite).
        type: str
      server_version:
        description: Version of the server dumped.
        type: str
      tool_version:
        description: Version of the dump tool.
        type: str
      options:
        description: Dump options used (format, compression, schemas...).
        type: dict
      inventory:
        description: Object inventory with per-table row counts, as returned by the dump modules.
        type: dict
  paths:
    description:
      - Files and directories to include, each stored as C(files/<id>/...).
      - Sources (databases and paths) must not be inside one another.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: Stable id of the path (safe-name rules); the mapping key on restore.
        type: str
        required: true
      path:
        description: File or directory, absolute or relative to O(root).
        type: str
        required: true
      exclude:
        description:
          - Glob patterns to leave out. A pattern without C(/) matches any entry's name at any depth; a pattern with
            C(/) matches the path relative to O(paths[].path). An excluded directory is not descended.
        type: list
        elements: str
        default: []
      optional:
        description: A missing path is recorded as absent with a warning instead of failing.
        type: bool
        default: false
  compression:
    description:
      - V(zstd) (multi-threaded) or V(gzip) (C(pigz) when installed).
    type: str
    choices: [zstd, gzip]
    default: zstd
  level:
    description:
      - Compression level; defaults to 3 for zstd (1..19) and 1 for gzip (1..9).
    type: int
  recipients:
    description:
      - age public keys (C(age1...)) or SSH public keys to encrypt the archive to. They reach C(age) through a 0600
        recipients file, never the command line.
    type: list
    elements: str
notes:
  - Stop writes during the backup (maintenance mode); a file changed while it was archived fails the backup.
  - Only one archive_create, M(appvault.backup.backup_prune) or M(appvault.backup.backup_file) works in a backup
    directory at a time (lock file C(.appvault.lock); a lock left by a dead process is taken over).
requirements:
  - GNU tar, zstd (or gzip), coreutils (C(tee), C(sha256sum)) and, for encryption, age on the managed host.
seealso:
  - module: appvault.backup.archive_restore
  - module: appvault.backup.backup_info
'''

EXAMPLES = r'''
- name: Back up the Exment database dump and storage
  appvault.backup.archive_create:
    dest_dir: /var/backups/appvault
    app:
      name: exment
      profile: exment
      version: "{{ exment_version.stdout }}"
    root: /var/www/exment
    databases:
      - id: main
        path: /var/backups/appvault/work/main.pgc.zst
        engine: postgresql
        server_version: "{{ dump.server_version }}"
        tool_version: "{{ dump.tool_version }}"
        inventory: "{{ dump.inventory }}"
    paths:
      - {id: attachments, path: storage/app/admin}
      - {id: logs, path: storage/logs, optional: true, exclude: ["*.tmp"]}
      - {id: config, path: .env}
  register: archive

- name: Encrypted archive with a label
  appvault.backup.archive_create:
    dest_dir: /var/backups/appvault
    label: before-upgrade
    app: {name: nocobase}
    paths:
      - {id: uploads, path: /srv/nocobase/storage/uploads}
    recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
'''

RETURN = r'''
path:
  description: Path of the archive.
  returned: always
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst
name:
  description: File name of the archive.
  returned: always
  type: str
  sample: exment-20250101T030000Z.tar.zst
estimate:
  description: Sum of the sizes of the regular files to archive (the free-space estimate), in bytes.
  returned: always
  type: int
  sample: 104857600
entries:
  description: Number of entries (files, directories, links) to archive.
  returned: always
  type: int
  sample: 10250
size:
  description: Size of the archive in bytes.
  returned: success, not in check mode
  type: int
  sample: 52428800
sha256:
  description: SHA-256 of the whole archive (also in the C(.sha256) sidecar).
  returned: success, not in check mode
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
checksum_file:
  description: Path of the C(.sha256) sidecar.
  returned: success, not in check mode
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst.sha256
manifest_file:
  description: Path of the unencrypted manifest sidecar of an encrypted archive.
  returned: when O(recipients) is set, not in check mode
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst.age.manifest.json
members:
  description: Number of members besides the manifest.
  returned: success, not in check mode
  type: int
  sample: 10250
manifest:
  description: The manifest written, without its member table.
  returned: success, not in check mode
  type: dict
  sample: {"format": "appvault.backup", "format_version": 1, "app": {"name": "exment", "version": "6.1.2"}}
commands:
  description: The pipeline run.
  returned: success, not in check mode
  type: list
  elements: str
  sample: ["tar --create ... | zstd -q -T2 -3 -c | tee ... | sha256sum"]
duration:
  description: Seconds the backup took.
  returned: success, not in check mode
  type: float
  sample: 3.2
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _archive, _common


def argument_spec():
    return dict(
        dest_dir=dict(type='path'),
        dest=dict(type='path'),
        label=dict(type='str', aliases=['name']),
        app=dict(type='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            profile=dict(type='str', default='generic'),
            version=dict(type='str'),
        )),
        root=dict(type='path'),
        databases=dict(type='list', elements='dict', default=[], options=dict(
            id=dict(type='str', required=True),
            path=dict(type='path', required=True),
            engine=dict(type='str'),
            server_version=dict(type='str'),
            tool_version=dict(type='str'),
            options=dict(type='dict'),
            inventory=dict(type='dict'),
        )),
        paths=dict(type='list', elements='dict', default=[], options=dict(
            id=dict(type='str', required=True),
            path=dict(type='str', required=True),
            exclude=dict(type='list', elements='str', default=[]),
            optional=dict(type='bool', default=False),
        )),
        compression=dict(type='str', default='zstd', choices=['zstd', 'gzip']),
        level=dict(type='int'),
        recipients=dict(type='list', elements='str', no_log=False),
    )


def run(module):
    params = module.params
    return _archive.create(
        params['dest_dir'], params['app'], params['databases'], params['paths'], root=params['root'],
        label=params['label'], dest=params['dest'], compression=params['compression'], level=params['level'],
        recipients=params['recipients'], check_mode=module.check_mode, warn=module.warn)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[('dest_dir', 'dest')], mutually_exclusive=[('dest', 'label')])
    _common.finish(module, run)


if __name__ == '__main__':
    main()
