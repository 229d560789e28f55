# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: dump_entry
short_description: Turn a database dump module's result into an archive_create database entry
version_added: 0.1.0
description:
  - Takes the registered result of M(appvault.backup.postgresql_dump), M(appvault.backup.mysql_dump) or
    M(appvault.backup.sqlite_dump) run in a loop over database ids (the id is the loop C(item)) and returns the
    entry M(appvault.backup.archive_create) takes in O(appvault.backup.archive_create#module:databases), so the
    manifest records the engine (the MySQL flavour when known), versions, options and object inventory.
author:
  - appvault.backup developers (!UNKNOWN)
options:
  _input:
    description: One result of a dump module run in a loop.
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Archive what the dumps produced
  appvault.backup.archive_create:
    dest_dir: /var/backups/appvault
    app: {name: demo}
    databases: "{{ dumps.results | map('appvault.backup.dump_entry') }}"
'''

RETURN = r'''
_value:
  description: C(id), C(path), C(engine), C(server_version), C(tool_version), C(options) and C(inventory).
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.appvault.backup.plugins.module_utils import _manifest
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def dump_entry(result):
    try:
        return _manifest.dump_entry(result)
    except AppvaultError as exc:
        raise AnsibleFilterError(exc.msg)


class FilterModule(object):
    def filters(self):
        return {'dump_entry': dump_entry}
