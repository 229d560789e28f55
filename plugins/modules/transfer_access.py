#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: transfer_access
short_description: Let another host send archives to this one with an ephemeral SSH key, and take it back
version_added: 0.1.0
description:
  - The receiving half of a direct transfer (M(appvault.backup.backup_send)). With O(state=present), adds the public
    key O(public_key) to O(user)'s C(~/.ssh/authorized_keys) as a restricted key (C(restrict) - no forwarding, no
    terminal, no agent) that expires by itself at O(expiry), and returns what the sender needs to reach this host
    safely - its SSH host keys and the address of its default route. With O(state=absent), removes that line again.
  - C(~/.ssh) (0700) and C(authorized_keys) (0600) are created owned by O(user) when missing; the file is rewritten
    atomically, other lines untouched.
  - The migrate role's C(transfer) entry point runs it on the target, with a key pair made on the controller by the
    P(appvault.backup.ssh_keypair#lookup) lookup, and removes the key in an C(always:) section.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the line would be added or removed, and the host keys and address.
  diff_mode:
    support: none
options:
  user:
    description:
      - The account the sender logs in as.
    type: str
    required: true
  public_key:
    description:
      - The sender's public key, one line (C(type base64 [comment])).
    type: str
    required: true
  expiry:
    description:
      - When the key stops working even if it is never removed, UTC, as C(YYYYMMDDHHMMZ) (OpenSSH C(expiry-time)).
    type: str
    required: true
  state:
    description:
      - V(present) authorizes the key, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: appvault.backup.backup_send
'''

EXAMPLES = r'''
- name: Authorize the sender's ephemeral key on the target
  appvault.backup.transfer_access:
    user: root
    public_key: "{{ keypair.public_key }}"
    expiry: "202501011200Z"
  delegate_to: target.example.com
  register: access

- name: Take it back
  appvault.backup.transfer_access:
    user: root
    public_key: "{{ keypair.public_key }}"
    expiry: "202501011200Z"
    state: absent
  delegate_to: target.example.com
'''

RETURN = r'''
line:
  description: The authorized_keys line added or removed.
  returned: always
  type: str
  sample: restrict,expiry-time="202501011200Z" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2x appvault-transfer-1
host_keys:
  description: This host's SSH public host keys (the contents of C(/etc/ssh/ssh_host_*_key.pub)).
  returned: with O(state=present)
  type: list
  elements: str
  sample: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2x8mNwv0E5c6k1K2oqQ1x1p4Vv2PY3m0cH2xq9Qw0B root@target"]
address:
  description: The IPv4 address of this host's default route (as the setup module's C(default_ipv4)), or V(null).
  returned: with O(state=present)
  type: str
  sample: 10.0.0.12
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _transfer


def argument_spec():
    return dict(
        user=dict(type='str', required=True),
        public_key=dict(type='str', required=True, no_log=False),
        expiry=dict(type='str', required=True),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    )


def run(module):
    p = module.params
    line = _transfer.access_line(p['public_key'], p['expiry'])
    result = dict(line=line, changed=_transfer.grant(p['user'], line, p['state'], check_mode=module.check_mode))
    if p['state'] == 'present':
        result.update(host_keys=_transfer.host_keys(), address=_transfer.default_address())
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
