# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: ssh_keypair
short_description: A new ephemeral ed25519 SSH key pair, made on the controller
version_added: 0.1.0
description:
  - Runs C(ssh-keygen) on the controller in a private directory that is removed at once, and returns the pair as a
    dictionary with C(private_key) (the OpenSSH private key text) and C(public_key) (one line).
  - Each call makes a new pair; store it with M(ansible.builtin.set_fact) and C(no_log) and pass the private key only
    to modules that take it as a secret (M(appvault.backup.backup_send) O(appvault.backup.backup_send#module:identity_key)).
  - The migrate role's C(transfer) entry point uses it for a direct transfer, so no key file is written on either host.
author:
  - appvault.backup developers (!UNKNOWN)
options:
  comment:
    description: The public key's comment.
    type: str
    default: appvault-transfer
requirements:
  - C(ssh-keygen) (OpenSSH client) on the controller.
'''

EXAMPLES = r'''
- name: An ephemeral key pair for this run
  ansible.builtin.set_fact:
    transfer_keypair: "{{ lookup('appvault.backup.ssh_keypair', comment='appvault-transfer-1') }}"
  no_log: true
'''

RETURN = r'''
_raw:
  description: One dictionary with the key pair.
  type: list
  elements: dict
  contains:
    private_key:
      description: The private key (OpenSSH format, no passphrase).
      type: str
    public_key:
      description: The public key line (C(ssh-ed25519 base64 comment)).
      type: str
'''

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.appvault.backup.plugins.module_utils import _transfer
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError
from ansible_collections.appvault.backup.plugins.module_utils._runner import CommandError


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        try:
            private, public = _transfer.keypair(self.get_option('comment'))
        except (AppvaultError, CommandError) as exc:
            raise AnsibleLookupError('cannot make an SSH key pair on the controller: %s' % exc.msg)
        return [dict(private_key=private, public_key=public)]
