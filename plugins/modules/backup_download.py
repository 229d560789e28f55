#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_download
short_description: Fetch a backup from an off-host destination into the backup directory, verified
version_added: 0.1.0
description:
  - Picks the newest valid backup at the destination (or the one named), downloads it with rclone under a temporary
    name, checks its size and sha256 against the destination's C(.sha256) checksum file, and only then publishes it
    and its checksum file in the backup directory, ready for the restore role.
  - A copy already in the backup directory that matches is used as it is (not changed); a different file of the same
    name is refused.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
  - appvault.backup.destination
attributes:
  check_mode:
    support: full
    details: Lists the destination and reports which backup would be downloaded; writes nothing.
  diff_mode:
    support: none
requirements:
  - rclone on the managed host (Debian package C(rclone), or O(rclone_path))
options:
  backup:
    description: V(latest) (the newest valid backup) or a backup's name.
    type: str
    default: latest
  dest_dir:
    description: The backup directory to download into (must exist).
    type: path
    required: true
seealso:
  - module: appvault.backup.backup_upload
  - module: appvault.backup.backup_info
'''

EXAMPLES = r'''
- name: Fetch the newest backup from the SFTP server
  appvault.backup.backup_download:
    dest_dir: /var/backups/appvault
    destination:
      name: nas
      kind: sftp
      host: nas.example.com
      user: backup
      key_file: /root/.ssh/id_backup
      known_hosts_file: /root/.ssh/known_hosts
      path: /srv/backups/exment
  register: fetched
'''

RETURN = r'''
destination:
  description: The destination's name.
  returned: always
  type: str
  sample: nas
name:
  description: The backup's name.
  returned: always
  type: str
  sample: exment-20250101T030000Z.tar.zst
url:
  description: Where it was at the destination (no credentials).
  returned: always
  type: str
  sample: sftp://backup@nas.example.com:22/srv/backups/exment/exment-20250101T030000Z.tar.zst
path:
  description: The verified local copy.
  returned: always
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst
size:
  description: Bytes.
  returned: always
  type: int
  sample: 52428800
sha256:
  description: The sha256 the destination's checksum file records (and the local copy has).
  returned: always
  type: str
  sample: 9f2c4e0b7d3a51c8e6f2a9b0c1d4e7f8a2b5c8d1e4f7a0b3c6d9e2f5a8b1c4d7
duration:
  description: Seconds taken.
  returned: success
  type: float
  sample: 8.1
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _destinations


def main():
    spec = dict(backup=dict(type='str', default='latest'), dest_dir=dict(type='path', required=True),
                **_destinations.module_options())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    _common.finish(module, lambda mod: _destinations.download(p['destination'], p['dest_dir'], p['backup'], p['rclone_path'], mod.check_mode))


if __name__ == '__main__':
    main()
