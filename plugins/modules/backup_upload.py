#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_upload
short_description: Copy a backup to an off-host destination (S3-compatible, SFTP, any rclone remote) and verify it there
version_added: 0.1.0
description:
  - Uploads an archive and its sidecars with rclone on the managed host, checks size and content at the destination,
    and publishes the C(.sha256) checksum file last. A backup at a destination counts as valid only with that file,
    so an upload that breaks off never looks valid.
  - The content check uses the best hash the destination reports (sha256; otherwise md5, compared with the local
    file's md5 after the local file's sha256 matched its checksum file), or reads the object back and computes its
    sha256 (O(destination.verify=download), or when the destination reports no hash).
  - A failed or unverified upload is retried O(destination.retries) times, then removed from the destination and
    reported as a failure naming every attempt.
  - A backup already at the destination with the same checksum file and verified content is left alone (not changed).
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
  - appvault.backup.destination
attributes:
  check_mode:
    support: full
    details: Reads the destination and reports whether the backup would be uploaded; transfers nothing.
  diff_mode:
    support: none
requirements:
  - rclone on the managed host (Debian package C(rclone), or O(rclone_path))
options:
  archive:
    description: The local backup archive; its C(.sha256) file must exist.
    type: path
    required: true
seealso:
  - module: appvault.backup.backup_download
  - module: appvault.backup.backup_info
  - name: rclone
    description: The tool that moves the bytes.
    link: https://rclone.org/
'''

EXAMPLES = r'''
- name: Copy the new backup to S3-compatible storage
  appvault.backup.backup_upload:
    archive: /var/backups/appvault/exment-20250101T030000Z.tar.zst
    destination:
      name: offsite
      kind: s3
      endpoint: https://s3.example.com
      bucket: backups
      prefix: exment
      access_key_id: "{{ vault_s3_key_id }}"
      secret_access_key: "{{ vault_s3_secret }}"
      storage_class: STANDARD_IA
'''

RETURN = r'''
destination:
  description: The destination's name.
  returned: always
  type: str
  sample: offsite
kind:
  description: The destination's kind.
  returned: always
  type: str
  sample: s3
name:
  description: The archive's name.
  returned: always
  type: str
  sample: exment-20250101T030000Z.tar.zst
url:
  description: Where the backup is at the destination (no credentials).
  returned: always
  type: str
  sample: s3://backups/exment/exment-20250101T030000Z.tar.zst at https://s3.example.com
size:
  description: Bytes.
  returned: always
  type: int
  sample: 52428800
sha256:
  description: The archive's sha256 (its checksum file's).
  returned: always
  type: str
  sample: 9f2c4e0b7d3a51c8e6f2a9b0c1d4e7f8a2b5c8d1e4f7a0b3c6d9e2f5a8b1c4d7
verified:
  description: How the content was checked at the destination (V(sha256), V(md5), V(sha1) or V(sha256 (read back))); null in check mode.
  returned: always
  type: str
  sample: md5
attempts:
  description: Upload attempts made (0 when the backup was already there).
  returned: always
  type: int
  sample: 1
duration:
  description: Seconds taken.
  returned: success
  type: float
  sample: 12.5
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _destinations


def main():
    spec = dict(archive=dict(type='path', required=True), **_destinations.module_options())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    _common.finish(module, lambda mod: _destinations.upload(mod.params['destination'], mod.params['archive'],
                                                            mod.params['rclone_path'], mod.check_mode))


if __name__ == '__main__':
    main()
