#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: archive_restore
short_description: Verify a backup archive completely, then put its members back in place safely
version_added: 0.1.0
description:
  - Before anything is touched, checks the whole file against its C(<archive>.sha256) sidecar and reads the whole
    archive once, checking every member against the manifest (type, size, sha256, mode, owner, mtime, link
    target). Refuses absolute member names, C(..), symlinks and hardlinks pointing outside their database or path,
    members below a symlink member, device files and FIFOs, duplicate members, members missing from or not listed
    in the manifest, and truncated or corrupt archives, each with a message naming the problem; nothing is changed
    then.
  - The same pass writes the selected paths into a staging directory beside each destination (modes, owners by
    name or number, nanosecond mtimes, symlinks, hardlinks and empty directories as GNU tar would extract them) and
    the selected dumps into a stage in O(dumps_dest); only once the whole archive is verified, and the staged files
    are on disk (C(syncfs)), are they swapped in. Once on disk, the staged files are dropped from the page cache,
    so a restore of many GB does not push what the database servers have cached out of memory. The current
    destination is moved aside to C(<dest>-bak-<UTC yyyymmddThhmmssZ>) and the staged copy renamed into its place.
    The moved-aside copy of this run is never deleted; O(keep_previous) bounds how many older copies stay.
  - A path whose destination already matches the archive (same entries, types, sizes, contents, modes and owners)
    is left alone, so running the module twice changes nothing the second time.
  - Extracts the selected database dumps into O(dumps_dest) and returns where each one is, with the engine,
    versions and inventory the manifest recorded, for the database restore modules. The dumps are written by the
    verifying read itself, into a private staging directory in O(dumps_dest) that is removed when the archive is
    refused, and moved into place once the whole archive is verified (a dump may hold only files and directories).
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Verifies the archive and reports, per path, the entries that would be added, changed and removed.
  diff_mode:
    support: full
    details: Lists the entries that would be added, changed and removed under each destination.
options:
  src:
    description:
      - The archive to restore.
    type: path
    required: true
  databases:
    description:
      - Ids of the database dumps to extract. All of them when not set; V([]) for none.
    type: list
    elements: str
  paths:
    description:
      - Ids of the paths to restore. All of them when not set; V([]) for none.
    type: list
    elements: str
  path_dest:
    description:
      - Destination per path id (absolute). Defaults to the path the backup was made from.
    type: dict
  dumps_dest:
    description:
      - Directory the database dumps are extracted to (created 0700). Defaults to C(<archive without suffix>.dumps)
        beside the archive.
    type: path
  owner:
    description:
      - Give every restored entry this owner (name or uid) instead of the one recorded. Modes are always kept.
    type: str
  group:
    description:
      - Give every restored entry this group (name or gid) instead of the one recorded.
    type: str
  keep_previous:
    description:
      - How many moved-aside copies (C(<dest>-bak-*)) of each destination to keep, counting the one made by this
        run, which is never removed. All are kept when not set.
    type: int
  identity:
    description:
      - age identity file to decrypt an encrypted archive (a path; the key itself is never passed on a command line).
    type: path
  require_checksum_file:
    description:
      - Refuse an archive without its C(.sha256) sidecar. With V(false) a missing sidecar is accepted (a mismatching
        one never is) and the per-member checksums of the manifest are the only check.
    type: bool
    default: true
  allow_external_symlinks:
    description:
      - Accept symlinks whose target is absolute or leaves their path. They are extracted as links, never followed.
    type: bool
    default: false
  force:
    description:
      - Swap a path in even when its destination already matches the archive.
    type: bool
    default: false
notes:
  - Extraction runs as the module's user; owners can be restored only as root.
  - Owners are restored by name when the name exists on this host, otherwise by number (GNU tar's behaviour).
seealso:
  - module: appvault.backup.archive_create
  - module: appvault.backup.postgresql_restore
'''

EXAMPLES = r'''
- name: Restore the storage of the latest backup, keeping two older copies
  appvault.backup.archive_restore:
    src: "{{ catalogue.latest_path }}"
    paths: [attachments, plugins]
    databases: [main]
    owner: www-data
    group: www-data
    keep_previous: 2
  register: restored

- name: Restore the database dump it extracted
  appvault.backup.postgresql_restore:
    name: exment
    src: "{{ restored.databases.main.path }}"
    expected_inventory: "{{ restored.databases.main.inventory }}"

- name: Restore into another root (migration)
  appvault.backup.archive_restore:
    src: /var/backups/appvault/exment-20250101T030000Z.tar.zst
    databases: []
    path_dest:
      attachments: /srv/exment/storage/app/admin
'''

RETURN = r'''
checksum:
  description: C(ok) when the sidecar matched, C(missing) when there was none (with O(require_checksum_file=false)).
  returned: always
  type: str
  sample: ok
manifest:
  description: The archive's manifest without its member table.
  returned: always
  type: dict
  sample: {"format": "appvault.backup", "format_version": 1, "app": {"name": "exment"}}
databases:
  description: Per database id, the manifest's entry (engine, versions, options, inventory) and C(path), where the dump was extracted.
  returned: always
  type: dict
  sample: {"main": {"path": "/var/backups/appvault/exment-20250101T030000Z.dumps/main.pgc.zst", "engine": "postgresql"}}
dumps_dest:
  description: Directory the dumps are extracted to.
  returned: always
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.dumps
paths:
  description:
    - Per path id, C(dest), whether it C(changed), the entries C(added), C(changed_entries) and C(removed) (at most 200
      names each) and their C(counts); C(previous), where the old copy was moved, and C(removed_copies).
  returned: always
  type: dict
  sample: {"attachments": {"dest": "/var/www/exment/storage/app/admin", "changed": true, "counts": {"added": 2, "changed": 0, "removed": 1},
           "previous": "/var/www/exment/storage/app/admin-bak-20250102T101500Z"}}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _archive, _common


def argument_spec():
    return dict(
        src=dict(type='path', required=True),
        databases=dict(type='list', elements='str'),
        paths=dict(type='list', elements='str'),
        path_dest=dict(type='dict'),
        dumps_dest=dict(type='path'),
        owner=dict(type='str'),
        group=dict(type='str'),
        keep_previous=dict(type='int'),
        identity=dict(type='path'),
        require_checksum_file=dict(type='bool', default=True),
        allow_external_symlinks=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
    )


def run(module):
    p = module.params
    result = _archive.restore(
        p['src'], databases=p['databases'], paths=p['paths'], path_dest=p['path_dest'], dumps_dest=p['dumps_dest'],
        owner=p['owner'], group=p['group'], keep_previous=p['keep_previous'], identity=p['identity'],
        require_checksum_file=p['require_checksum_file'], allow_external_symlinks=p['allow_external_symlinks'],
        check_mode=module.check_mode, want_diff=module._diff, force=p['force'])
    if not module._diff:
        result.pop('diff')
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
