# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: migrate_mapping
short_description: The target's environment definition - the source's with a mapping laid over it
version_added: 0.1.0
description:
  - Returns the source's environment definition (O(_input), an unresolved C(appvault_app)) with O(mapping) laid over
    it - top-level C(name), C(profile), C(root), C(owner), C(group), C(version) replaced; C(commands) replaced per
    command; C(databases) and C(paths) changed per id (for example a database's C(name), C(login_host),
    C(login_port), C(login_user), C(login_password), or a path's C(path)).
  - Fails naming the key when the mapping names an id the source lacks or a key that cannot be mapped (a database's
    engine cannot change), or when the result is not a valid definition.
  - The migrate role calls it on the target host with C(appvault_migrate_mapping). See docs/migration.md.
author:
  - appvault.backup developers (!UNKNOWN)
options:
  _input:
    description: The source's environment definition (C(appvault_app)).
    type: dict
    required: true
  mapping:
    description: What differs on the target.
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: The target's definition
  ansible.builtin.set_fact:
    target_app: "{{ appvault_app | appvault.backup.migrate_mapping({'databases': {'main': {'name': 'exment_new'}}}) }}"
  no_log: true
'''

RETURN = r'''
_value:
  description: The target's definition, unresolved (pass it through P(appvault.backup.app_definition#filter)).
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.appvault.backup.plugins.module_utils._appdef import map_definition
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def migrate_mapping(app, mapping):
    try:
        return map_definition(app, mapping)
    except AppvaultError as exc:
        raise AnsibleFilterError(exc.msg)


class FilterModule(object):
    def filters(self):
        return {'migrate_mapping': migrate_mapping}
