#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_info
short_description: List the backups of a backup directory, or show one archive's manifest
version_added: 0.1.0
description:
  - Lists the archives of a backup directory newest first with their name, creation time (UTC), size, application
    and its version, database engines and versions, whether they are pinned and whether they are valid, with the
    reason when they are not. Also returns the newest valid one as RV(latest).
  - Reads manifests only. For a plain archive only the first member (C(manifest.json)) is decompressed; for an
    encrypted archive the unencrypted C(<archive>.manifest.json) sidecar is read.
  - Archives dropped into the directory by hand get the same checks. A valid backup has a readable manifest and
    its C(.sha256) sidecar; with O(verify=true) the sidecar must also match the file (which reads every archive).
    Other files with an archive suffix (C(.zip) backups of Exment itself, for example) are listed as invalid.
  - With O(destination), lists an off-host destination instead (through rclone). There a backup is valid when its
    C(.sha256) checksum file is there (uploaded last, after verification); the creation time comes from the archive's
    name and the application version is not known. O(verify=true) checks each one's size and hash at the destination.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
  - appvault.backup.destination
attributes:
  check_mode:
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    support: none
options:
  path:
    description:
      - The backup directory to list.
    type: path
  archive:
    description:
      - One archive whose catalogue entry and manifest to return instead of a listing.
    type: path
  verify:
    description:
      - Check every archive against its C(.sha256) sidecar (reads every archive completely).
    type: bool
    default: false
seealso:
  - module: appvault.backup.backup_prune
  - module: appvault.backup.backup_file
  - module: appvault.backup.backup_upload
'''

EXAMPLES = r'''
- name: The backup catalogue
  appvault.backup.backup_info:
    path: /var/backups/appvault
    verify: true
  register: catalogue

- name: Show the newest valid backup
  ansible.builtin.debug:
    msg: "{{ catalogue.latest }}"

- name: One archive's manifest
  appvault.backup.backup_info:
    archive: /var/backups/appvault/exment-20250101T030000Z.tar.zst
  register: one

- name: The backups at an SFTP destination
  appvault.backup.backup_info:
    destination:
      name: nas
      kind: sftp
      host: nas.example.com
      user: backup
      key_file: /root/.ssh/id_backup
      path: /srv/backups/exment
  register: offsite
'''

RETURN = r'''
table:
  description: The catalogue as aligned text lines (name, creation time, size, app version, valid or why not), newest first.
  returned: when O(path) or O(destination) is given
  type: list
  elements: str
  sample: ["name                               created (UTC)         size     app version  state",
           "exment-20250101T030000Z.tar.zst    2025-01-01T03:00:00Z  1.2 GiB  6.1.2        valid"]
backups:
  description:
    - The archives, newest first. C(checksum) is V(missing), V(present), V(ok), V(mismatch) or V(unreadable);
      C(sha256) is the digest recorded in the C(.sha256) file (V(null) without one).
    - With O(verify=true), an archive that matched its C(.sha256) file also has C(verified_identity), the file's
      device, inode, size, mtime and ctime while it was read. Given to M(appvault.backup.backup_restore) as
      O(appvault.backup.backup_restore#module:verified) with C(sha256), it spares the restore a second read of the
      whole file for its checksum as long as the file has not changed since.
  returned: when O(path) or O(destination) is given
  type: list
  elements: dict
  sample: [{"name": "exment-20250101T030000Z.tar.zst", "created_at": "2025-01-01T03:00:00Z", "size": 52428800, "app": "exment",
            "app_version": "6.1.2", "engines": [{"id": "main", "engine": "mysql", "server_version": "10.11.6"}],
            "pinned": false, "valid": true, "reason": null, "checksum": "ok", "encrypted": false,
            "sha256": "9f2c4e0b7d3a51c8e6f2a9b0c1d4e7f8a2b5c8d1e4f7a0b3c6d9e2f5a8b1c4d7"}]
latest:
  description: Name of the newest valid backup, or null.
  returned: when O(path) or O(destination) is given
  type: str
  sample: exment-20250101T030000Z.tar.zst
latest_path:
  description: Path of the newest valid backup, or null.
  returned: when O(path) or O(destination) is given
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst
count:
  description: Number of archives listed.
  returned: when O(path) or O(destination) is given
  type: int
  sample: 7
ignored:
  description: Other files of the directory, not archives.
  returned: when O(path) or O(destination) is given
  type: list
  elements: str
  sample: [README.txt]
backup:
  description: The catalogue entry of O(archive), with the keys of an entry of RV(backups).
  returned: when O(archive) is given
  type: dict
  sample: {"name": "exment-20250101T030000Z.tar.zst", "valid": true, "checksum": "ok",
           "sha256": "9f2c4e0b7d3a51c8e6f2a9b0c1d4e7f8a2b5c8d1e4f7a0b3c6d9e2f5a8b1c4d7",
           "verified_identity": "2049:1835021:52428800:1735700400123456789:1735700400123456789"}
destination:
  description: The destination's name.
  returned: when O(destination) is given
  type: str
  sample: nas
url:
  description: The destination folder (no credentials).
  returned: when O(destination) is given
  type: str
  sample: sftp://backup@nas.example.com:22/srv/backups/exment
manifest:
  description:
    - The manifest of O(archive), or null when it cannot be read.
    - Without its member table, which is checked entry by entry as it is read and then left out (it holds one entry
      per file, too big a result for a large storage); V(members_omitted) is then true and V(member_count) gives the
      number of entries. M(appvault.backup.archive_restore) checks every member against it.
  returned: when O(archive) is given
  type: dict
  sample: {"format": "appvault.backup", "format_version": 1, "members_omitted": true, "member_count": 3512}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common, _destinations


def argument_spec():
    return dict(
        path=dict(type='path'),
        archive=dict(type='path'),
        verify=dict(type='bool', default=False),
        **_destinations.module_options()
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[('path', 'archive', 'destination')], mutually_exclusive=[('path', 'archive', 'destination')])
    _common.finish(module, run)


def run(module):
    p = module.params
    if p['destination']:
        return _destinations.info(p['destination'], p['verify'], p['rclone_path'])
    return _catalog.info(p['path'], p['archive'], p['verify'])


if __name__ == '__main__':
    main()
