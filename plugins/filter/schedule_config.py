# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: schedule_config
short_description: Check the configuration of the host-side backup runner
version_added: 0.1.0
description:
  - Checks the configuration the P(appvault.backup.schedule#role) role writes for the host-side runner (C(appvault-run))
    with the runner's own reader, so a mistake is reported before anything is installed, naming the key that is wrong.
  - Returns the configuration unchanged; the runner resolves C(app) with the same code as the
    P(appvault.backup.app_definition#filter) filter when it starts.
author:
  - appvault.backup developers (!UNKNOWN)
options:
  _input:
    description: The configuration (C(version), C(app), C(backup_dir), C(keep), hooks, C(check), ...).
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Check the runner's configuration before writing it
  ansible.builtin.assert:
    that: (config | appvault.backup.schedule_config) is mapping
  no_log: true
'''

RETURN = r'''
_value:
  description: The configuration, unchanged.
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def schedule_config(config):
    # Imported here, not above: Ansible loads every filter file of a collection (in each task's worker) to find
    # any one of its filters, and _hostrun brings in nearly all of module_utils, compiled from source each time.
    from ansible_collections.appvault.backup.plugins.module_utils import _hostrun

    try:
        _hostrun.check_config(config, 'the scheduled backup\'s configuration')
    except AppvaultError as exc:
        raise AnsibleFilterError(exc.msg)
    return config


class FilterModule(object):
    def filters(self):
        return {'schedule_config': schedule_config}
