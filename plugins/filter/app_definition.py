# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: app_definition
short_description: Complete and validate an environment definition (appvault_app)
version_added: 0.1.0
description:
  - Merges the presets of the definition's O(_input.profile) (paths and commands for C(exment), C(nocobase); none for
    C(generic)) under the user's values, resolves paths against O(_input.root), splits commands into argument lists
    and checks every key, failing with a message that names the key that is wrong.
  - The roles call it once in their preflight; everything later reads its result.
author:
  - appvault.backup developers (!UNKNOWN)
options:
  _input:
    description: The environment definition, as described in docs/environment.md.
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Resolve the definition once
  ansible.builtin.set_fact:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
  no_log: true
'''

RETURN = r'''
_value:
  description:
    - The definition with C(profile), absolute C(root), C(owner), C(group), C(databases) (each with C(module), the
      module family V(postgresql), V(mysql) or V(sqlite)), C(paths) (absolute C(path), C(optional), C(exclude)),
      C(commands) (argument lists or V(null)) and C(engines).
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.appvault.backup.plugins.module_utils._appdef import resolve
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def app_definition(app):
    try:
        return resolve(app)
    except AppvaultError as exc:
        raise AnsibleFilterError(exc.msg)


class FilterModule(object):
    def filters(self):
        return {'app_definition': app_definition}
