#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_send
short_description: Send one backup archive from this host straight to another host over SSH
version_added: 0.1.0
description:
  - Pushes O(src) and its checksum file (C(<src>.sha256)) from the host the module runs on to O(dest) with C(rsync)
    over C(ssh). The bytes go host to host; nothing passes through the Ansible controller.
  - The archive is written to a hidden partial name in the destination directory (C(.<name>.partial)); an interrupted
    transfer is resumed from there on the next run (C(rsync --append-verify)). No C(-z) - archives are compressed.
  - On arrival the receiving host computes the file's sha256 and compares it with the sender's checksum file. On a
    match the archive and a new checksum file are flushed and renamed into place there (the checksum file last); on a
    mismatch the partial is removed and the module fails. Nothing incomplete or unverified ever carries the archive's
    name.
  - An archive already at the destination with the same recorded sha256 is left alone (C(changed=false)); one with
    another sha256 is refused unless O(force=true).
  - The receiving host needs C(rsync), C(sha256sum) and a POSIX shell for the login user; this host needs C(ssh) and
    C(rsync). Host keys are always checked (O(host_keys) or O(known_hosts)); the connection never prompts.
  - When this host's CPU has AES instructions, C(ssh) offers AES-GCM first (OpenSSH's default ciphers, reordered, so a
    server accepts what it did before). There it moves an archive about twice as fast as chacha20-poly1305, the
    default's first choice.
  - With O(probe=true) only checks that this host can log in to O(dest) and finds the tools there, and reports
    RV(reachable) instead of failing. With O(unreachable=report) it checks that first and then sends; a destination it
    cannot use is reported the same way (nothing is sent), any later failure fails the module.
  - The role entry point C(appvault.backup.migrate) C(tasks_from=transfer) sets up an ephemeral key for this module
    and falls back to a transfer through the controller when the hosts cannot reach each other.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.attributes
attributes:
  check_mode:
    support: full
    details: Logs in and reads the destination's state; creates and sends nothing.
  diff_mode:
    support: none
options:
  src:
    description:
      - The archive on this host. Its checksum file C(<src>.sha256) is used when present; otherwise the sha256 is computed.
    type: path
  dest:
    description:
      - Where to, as C(user@host:/absolute/dir) (the user is optional; an IPv6 address goes in brackets). The directory
        is created (mode 0700) when missing.
    type: str
    required: true
  port:
    description:
      - SSH port of the receiving host.
    type: int
    default: 22
  identity:
    description:
      - Private key file on this host to log in with (only this key is offered).
    type: path
  identity_key:
    description:
      - The private key itself (OpenSSH format), for an ephemeral key made elsewhere (the
        P(appvault.backup.ssh_keypair#lookup) lookup). Written to a 0600 file in a private directory for this run only.
      - Mutually exclusive with O(identity).
    type: str
  host_keys:
    description:
      - The receiving host's SSH public host keys (C(type base64 [comment]), as in C(/etc/ssh/ssh_host_*_key.pub)); they
        are the only keys accepted for it. Without them the user's C(known_hosts) or O(known_hosts) decides.
    type: list
    elements: str
  known_hosts:
    description:
      - A known_hosts file on this host to check the receiving host's key against.
    type: path
  timeout:
    description:
      - Seconds without any data moving before C(rsync) gives up (the partial is kept for a resume).
    type: int
    default: 300
  connect_timeout:
    description:
      - Seconds to wait for the SSH connection.
    type: int
    default: 10
  force:
    description:
      - Replace an archive of the same name but another sha256 at the destination.
    type: bool
    default: false
  probe:
    description:
      - Only check that O(dest) can be reached and has the tools; RV(reachable) tells, the module does not fail.
    type: bool
    default: false
  unreachable:
    description:
      - What a destination that cannot be logged in to (or lacks rsync or sha256sum) means when sending - V(fail), or
        V(report) it as RV(reachable=false) with RV(reason) and send nothing, so the caller can take another way.
    type: str
    choices: [fail, report]
    default: fail
notes:
  - The private key's path is in the command line, never a key or a password.
seealso:
  - module: appvault.backup.backup_info
'''

EXAMPLES = r'''
- name: Send the newest backup to the standby host
  appvault.backup.backup_send:
    src: /var/backups/appvault/exment-20241201T030000Z.tar.zst
    dest: backup@standby.example.com:/var/backups/appvault
    identity: /root/.ssh/appvault_send
    host_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2x8mNwv0E5c6k1K2oqQ1x1p4Vv2PY3m0cH2xq9Qw0B root@standby

- name: Can the source reach the target directly?
  appvault.backup.backup_send:
    dest: root@10.0.0.12:/var/backups/appvault
    identity: /root/.ssh/appvault_send
    known_hosts: /root/.ssh/known_hosts
    probe: true
  register: reach
'''

RETURN = r'''
reachable:
  description: With O(probe=true) or O(unreachable=report), whether O(dest) answered and has rsync and sha256sum.
  returned: with probe or unreachable=report
  type: bool
  sample: true
reason:
  description: With O(probe=true) or O(unreachable=report), why O(dest) cannot be used.
  returned: with probe or unreachable=report, when not reachable
  type: str
  sample: "cannot log in to 10.0.0.12: Connection timed out"
mode:
  description: How the archive travelled - always C(direct) (host to host) for this module.
  returned: success, without probe
  type: str
  sample: direct
path:
  description: The archive's path on the receiving host.
  returned: success, without probe
  type: str
  sample: /var/backups/appvault/exment-20241201T030000Z.tar.zst
size:
  description: Size of the archive in bytes.
  returned: success, without probe
  type: int
  sample: 104857600
sha256:
  description: The archive's sha256, as verified on the receiving host.
  returned: success, without probe
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
checksum_file:
  description: Whether the sha256 came from the sender's checksum file (otherwise it was computed here).
  returned: success, without probe
  type: bool
  sample: true
resumed_bytes:
  description: Bytes of a partial left by an earlier interrupted transfer that this run resumed from.
  returned: success, without probe
  type: int
  sample: 0
duration:
  description: Seconds the transfer and the verification took.
  returned: when sent
  type: float
  sample: 4.2
verified_identity:
  description:
    - The archive's identity on the receiving host right after its sha256 matched there and it was renamed into place
      (device, inode, size, mtime, ctime). With RV(sha256), a restore there trusts that check instead of hashing the
      whole file again (O(appvault.backup.app_preflight#module:verified)).
  returned: when sent and the receiving host has python3
  type: str
  sample: "2049:1835021:52428800:1735700400123456789:1735700400123456789"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _common, _transfer
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def argument_spec():
    return dict(
        _transfer.connection_options(),
        src=dict(type='path'),
        force=dict(type='bool', default=False),
        probe=dict(type='bool', default=False),
        unreachable=dict(type='str', choices=['fail', 'report'], default='fail'),
    )


def run(module):
    p = module.params
    if not p['probe'] and not p['src']:
        raise AppvaultError('src is required unless probe: true')
    with _common.SecretDir() as secrets:
        identity = secrets.write('identity', p['identity_key'].rstrip('\n') + '\n') if p['identity_key'] else p['identity']
        connection = dict(port=p['port'], identity=identity, host_keys=p['host_keys'], known_hosts=p['known_hosts'],
                          connect_timeout=p['connect_timeout'])
        if p['probe'] or p['unreachable'] == 'report':
            reach = _transfer.probe(p['dest'], **connection)
            if p['probe'] or not reach['reachable']:
                return reach
        result = _transfer.send(p['src'], p['dest'], timeout=p['timeout'], force=p['force'], check_mode=module.check_mode, **connection)
        if p['unreachable'] == 'report':
            result['reachable'] = True
        return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, mutually_exclusive=[('identity', 'identity_key')])
    _common.finish(module, run)


if __name__ == '__main__':
    main()
