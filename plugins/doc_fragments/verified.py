# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Mirrors plugins/module_utils/_catalog.py verified_argument_spec().
    DOCUMENTATION = r'''
options:
  verified:
    description:
      - A check of the whole archive against its C(.sha256) file made moments before on this host, to trust instead of
        hashing the whole file again. M(appvault.backup.backup_info) with O(appvault.backup.backup_info#module:verify=true)
        and M(appvault.backup.app_preflight) with O(appvault.backup.app_preflight#module:archive) make one (their
        C(backup.verified_identity)), and so does the receiving host of M(appvault.backup.backup_send) and of
        M(appvault.backup.backup_create)'s O(appvault.backup.backup_create#module:send_to), on arrival (their
        C(verified_identity)).
      - Trusted only while the C(.sha256) file still holds O(verified.sha256) and the archive still has
        O(verified.identity) (device, inode, size, mtime and ctime; any write changes the ctime, which cannot be set
        back). Otherwise the whole file is hashed as without it.
      - The roles give what the step before them verified (the restore role's preflight, the migrate role's transfer).
    type: dict
    suboptions:
      sha256:
        description: The archive's sha256 that the check found.
        type: str
        required: true
      identity:
        description: The file's identity during that check (C(verified_identity)).
        type: str
        required: true
'''
