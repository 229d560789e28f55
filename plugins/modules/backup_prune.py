#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_prune
short_description: Remove old backups by retention rules, keeping pinned ones and the newest
version_added: 0.1.0
description:
  - Applies C(keep_last), C(keep_daily), C(keep_weekly), C(keep_monthly) and C(keep_yearly) to the valid backups
    of a directory, with the meaning restic's C(forget) gives them; days, ISO weeks, months and years are counted
    in UTC from the manifest's creation time.
  - Each rule runs independently over the backups newest first. O(keep_last=N) keeps the N newest.
    O(keep_daily=N) keeps the newest backup of each of the N most recent days that have a backup (days without a
    backup do not count); the weekly, monthly and yearly rules work the same way. A backup is kept when any rule
    keeps it. Without any rule, O(keep_last=7) applies.
  - Pinned backups (see M(appvault.backup.backup_file)) are never removed and do not count towards the rules.
    The newest valid backup is never removed, whatever the rules say.
  - Only valid backups (readable manifest, C(.sha256) sidecar present and, with O(verify=true), matching) are
    candidates; invalid files are reported in RV(invalid) and left for a human to look at.
  - An archive is removed together with its sidecars, under the directory's lock.
  - With O(destination), prunes an off-host destination instead (through rclone), with the same rules; without any
    keep option the destination's own (O(destination.keep_last) ...) apply. The checksum file is removed first, so
    an interrupted prune leaves an invalid object, never a valid-looking one.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
  - appvault.backup.destination
attributes:
  check_mode:
    support: full
    details: Reports what would be removed and kept; removes nothing.
  diff_mode:
    support: none
options:
  path:
    description:
      - The backup directory. One of O(path) and O(destination) is required.
    type: path
  keep_last:
    description:
      - Keep the N newest backups. Defaults to 7 when no rule is given (at a destination, when neither the module nor
        the destination gives one).
    type: int
  keep_daily:
    description:
      - Keep the newest backup of each of the N most recent days that have one.
    type: int
  keep_weekly:
    description:
      - Keep the newest backup of each of the N most recent ISO weeks that have one.
    type: int
  keep_monthly:
    description:
      - Keep the newest backup of each of the N most recent months that have one.
    type: int
  keep_yearly:
    description:
      - Keep the newest backup of each of the N most recent years that have one.
    type: int
  verify:
    description:
      - Check every archive against its C(.sha256) sidecar first; an archive that does not match is not a candidate.
    type: bool
    default: false
seealso:
  - module: appvault.backup.backup_info
  - module: appvault.backup.backup_upload
  - name: restic forget
    description: The retention semantics followed.
    link: https://restic.readthedocs.io/en/stable/060_forget.html
'''

EXAMPLES = r'''
- name: Seven daily, four weekly and six monthly backups
  appvault.backup.backup_prune:
    path: /var/backups/appvault
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6

- name: What the default (keep_last 7) would remove
  appvault.backup.backup_prune:
    path: /var/backups/appvault
  check_mode: true
  register: plan

- name: Fourteen daily backups at the S3 destination
  appvault.backup.backup_prune:
    destination: "{{ appvault_backup_destinations | selectattr('name', 'eq', 'offsite') | first }}"
    keep_daily: 14
'''

RETURN = r'''
removed:
  description: Names of the backups removed (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [exment-20241201T030000Z.tar.zst]
kept:
  description: The backups kept, newest first, with the rules that keep each (C(last), C(daily), C(weekly), C(monthly), C(yearly), C(pinned), C(newest)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "exment-20250101T030000Z.tar.zst", "created_at": "2025-01-01T03:00:00Z", "reasons": ["last", "daily"]}]
invalid:
  description: Invalid files left alone, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "old.tar.zst", "reason": "no checksum file old.tar.zst.sha256"}]
destination:
  description: The destination's name.
  returned: when O(destination) is given
  type: str
  sample: offsite
rules:
  description: The rules applied.
  returned: always
  type: dict
  sample: {"keep_last": 7, "keep_daily": null, "keep_weekly": null, "keep_monthly": null, "keep_yearly": null}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common, _destinations


def argument_spec():
    return dict(
        path=dict(type='path'),
        keep_last=dict(type='int'),
        keep_daily=dict(type='int'),
        keep_weekly=dict(type='int'),
        keep_monthly=dict(type='int'),
        keep_yearly=dict(type='int'),
        verify=dict(type='bool', default=False),
        **_destinations.module_options()
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[('path', 'destination')], mutually_exclusive=[('path', 'destination')])
    _common.finish(module, run)


def run(module):
    p = module.params
    if p['destination']:
        return _destinations.prune(p['destination'], dict((k, p[k]) for k in _destinations.RULE_KEYS), p['verify'],
                                   p['rclone_path'], module.check_mode)
    return _catalog.prune(p['path'], keep_last=p['keep_last'], keep_daily=p['keep_daily'], keep_weekly=p['keep_weekly'],
                          keep_monthly=p['keep_monthly'], keep_yearly=p['keep_yearly'], verify=p['verify'],
                          check_mode=module.check_mode, warn=module.warn)


if __name__ == '__main__':
    main()
