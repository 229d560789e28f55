#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_create
short_description: Dump every database of an application environment and archive the dumps with its files, in one step
version_added: 0.1.0
description:
  - Does on the host, in one module call, what the backup role used to do with one call per database plus one for the
    archive. Every database of O(app) is dumped with the code of its engine's dump module (as
    M(appvault.backup.postgresql_dump), M(appvault.backup.mysql_dump) and M(appvault.backup.sqlite_dump) would, with
    the connection and O(app.databases[].options) of the definition) into a private 0700 work directory
    C(.work-<token>) under O(backup_dir); then the dumps and the paths of O(app) are written into one archive as
    M(appvault.backup.archive_create) does (manifest with every database's inventory, C(.sha256) sidecar); the work
    directory is removed whatever happens.
  - The same steps as a scheduled backup (the runner the appvault.backup.schedule role installs), from the same code.
  - Made to run asynchronously and be followed by M(appvault.backup.job_wait) with O(appvault.backup.job_wait#module:watch)
    set to O(backup_dir) (the dumps and the archive are written as C(*.partial) files there until they are complete).
  - With O(keep_last), applies that retention to O(backup_dir) once the archive is written (as
    M(appvault.backup.backup_prune) with O(appvault.backup.backup_prune#module:keep_last) does - pinned and invalid
    backups are never removed, the newest valid one always stays).
  - Does not switch maintenance mode or take the run lock; the backup role does that around it. With O(release_lock)
    it releases that lock once the backup succeeded, when nothing follows it in the run.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.app
  - appvault.backup.attributes
attributes:
  check_mode:
    support: none
    details: Use M(appvault.backup.app_preflight) to check an environment (databases, tools, paths, free space) without
      changing anything.
  diff_mode:
    support: none
options:
  backup_dir:
    description:
      - The backup directory the archive is written to (created with mode 0700 when missing).
    type: path
    required: true
  token:
    description:
      - Names the work directory C(.work-<token>) of the dumps (ASCII letters and digits). A random one by default.
    type: str
  app_version:
    description:
      - The application's version for the manifest, for example the output of its C(version) command. Default
        O(app.version).
    type: str
  label:
    description:
      - Label appended to the archive's generated name (ASCII letters, digits, C(-), C(_), C(.)).
    type: str
  compression:
    description:
      - Compression of the archive, V(zstd) (multi-threaded) or V(gzip). The dumps use each database's own
        C(compression) in O(app.databases[].options) (default zstd).
    type: str
    choices: [zstd, gzip]
    default: zstd
  recipients:
    description:
      - age public keys to encrypt the archive to (see M(appvault.backup.archive_create)).
    type: list
    elements: str
  checksums:
    description:
      - Record per-table content checksums in every database's inventory as well as row counts (slower, one more
        read of every table), so the restore verifies the content too.
    type: bool
    default: true
  keep_last:
    description:
      - Once the archive is written, keep only this many valid backups in O(backup_dir) (the newest; pinned ones do not
        count and stay). Default no retention.
    type: int
  send_to:
    description:
      - Also stream the archive to another host while it is written, so that it is there, verified, moments after it is
        complete here (the migrate role's direct transfer). The archive is read right behind its writer, sent over
        SSH to the hidden partial name C(.<name>.partial) in the destination directory, hashed there as it arrives,
        compared with this host's sha256 and only then renamed into place there, checksum file last - the same
        result as M(appvault.backup.backup_send), without a second pass over the archive.
      - A stream that fails (no connection, the receiver stops, a sha256 that differs, the archive already there)
        does not fail the backup - RV(sent) says why, and M(appvault.backup.backup_send) can resume the partial left
        there. An encrypted archive's manifest sidecar is not sent.
      - The receiving host needs a POSIX shell and C(python3) or C(sha256sum) for the login user.
    type: dict
    suboptions:
      dest:
        description:
          - As O(appvault.backup.backup_send#module:dest) - C(user@host:/absolute/dir).
        type: str
        required: true
      port:
        description:
          - As O(appvault.backup.backup_send#module:port).
        type: int
        default: 22
      identity:
        description:
          - As O(appvault.backup.backup_send#module:identity). Mutually exclusive with O(send_to.identity_key).
        type: path
      identity_key:
        description:
          - As O(appvault.backup.backup_send#module:identity_key) (a secret, never logged).
        type: str
      host_keys:
        description:
          - As O(appvault.backup.backup_send#module:host_keys).
        type: list
        elements: str
      known_hosts:
        description:
          - As O(appvault.backup.backup_send#module:known_hosts).
        type: path
      timeout:
        description:
          - Seconds the receiving side may take no byte before the stream is given up.
        type: int
        default: 300
      connect_timeout:
        description:
          - As O(appvault.backup.backup_send#module:connect_timeout).
        type: int
        default: 10
  release_lock:
    description:
      - The token of the run that holds the run lock of O(backup_dir) (taken by M(appvault.backup.run_lock) or
        M(appvault.backup.app_preflight)). Once the archive is written and the retention applied, that lock is
        released in this same call, as M(appvault.backup.run_lock) with
        O(appvault.backup.run_lock#module:state=absent) does; one call fewer. A lock held by another run is left
        alone, with a warning.
      - On failure the lock is kept (the caller releases it). A release that fails does not fail the backup; then
        RV(lock_released) is not returned and a warning says why.
      - The backup role sets it when no maintenance, off-host copy or download follows the archive.
    type: str
notes:
  - Stop writes during the backup (maintenance mode) for one consistent point across databases and files; a file that
    changes while it is archived fails the backup, and nothing is left behind.
requirements:
  - The client programs of every database engine (C(pg_dump), C(mariadb-dump) or C(mysqldump)), GNU tar, zstd (or
    gzip) and, for encryption, age on the managed host.
seealso:
  - module: appvault.backup.archive_create
  - module: appvault.backup.app_preflight
  - module: appvault.backup.job_wait
'''

EXAMPLES = r'''
- name: Dump and archive in the background
  appvault.backup.backup_create:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
    backup_dir: /var/backups/appvault
    label: before-upgrade
  async: 86400
  poll: 0
  register: job

- name: Wait for it, with progress lines
  appvault.backup.job_wait:
    jid: "{{ job.ansible_job_id }}"
    watch: /var/backups/appvault
    label: backup
  register: backup

- name: Back up in the foreground, then release the run lock this run took
  appvault.backup.backup_create:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
    backup_dir: /var/backups/appvault
    release_lock: "{{ run_token }}"

- name: Back up and stream the archive to the target host as it is written
  appvault.backup.backup_create:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
    backup_dir: /var/backups/appvault
    label: migrate
    send_to:
      dest: root@10.0.0.12:/var/backups/appvault
      identity_key: "{{ keypair.private_key }}"
      host_keys: "{{ target_access.host_keys }}"
  async: 86400
  poll: 0
  register: job
'''

RETURN = r'''
lock_released:
  description: Whether O(release_lock) released the run lock (V(false) when this run no longer held it).
  returned: with O(release_lock), when the backup succeeded and the release did not fail
  type: bool
  sample: true
path:
  description: Path of the archive.
  returned: success
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst
name:
  description: File name of the archive.
  returned: success
  type: str
  sample: exment-20250101T030000Z.tar.zst
size:
  description: Size of the archive in bytes.
  returned: success
  type: int
  sample: 52428800
sha256:
  description: SHA-256 of the whole archive (also in the C(.sha256) sidecar).
  returned: success
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
checksum_file:
  description: Path of the C(.sha256) sidecar.
  returned: success
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst.sha256
manifest_file:
  description: Path of the unencrypted manifest sidecar of an encrypted archive.
  returned: when O(recipients) is set
  type: str
  sample: /var/backups/appvault/exment-20250101T030000Z.tar.zst.age.manifest.json
entries:
  description: Number of entries (files, directories, links) archived.
  returned: success
  type: int
  sample: 10250
members:
  description: Number of members besides the manifest.
  returned: success
  type: int
  sample: 10251
manifest:
  description: The manifest written, without its member table (databases with engine, versions and inventory; paths).
  returned: success
  type: dict
  sample: {"format": "appvault.backup", "format_version": 1, "app": {"name": "exment", "version": "6.1.2"}}
commands:
  description: The archive's pipeline (the dumps' commands are those of the engines' dump modules).
  returned: success
  type: list
  elements: str
  sample: ["tar --create ... | zstd -q -T2 -3 -c > /var/backups/appvault/.exment-20250101T030000Z.tar.zst.partial"]
log:
  description: What was done, one line per step (each dump with its size and time, warnings).
  returned: success
  type: list
  elements: str
  sample: ["dumped database main (postgresql 15.8): 120.0 MiB in 14.2 s"]
pruned:
  description: With O(keep_last), the retention's outcome (as M(appvault.backup.backup_prune) returns it).
  returned: with keep_last
  type: dict
  sample: {"kept": ["exment-20250101T030000Z.tar.zst"], "removed": ["exment-20241224T030000Z.tar.zst"], "invalid": []}
sent:
  description: With O(send_to), the stream's outcome - whether the archive arrived and was verified and renamed
    into place there (V(sent)), its path there, size and sha256, and V(reason) when it did not. V(verified_identity)
    is the archive's identity there right after that check (as M(appvault.backup.backup_send) returns it), for a
    restore there to trust it (O(appvault.backup.app_preflight#module:verified)).
  returned: with send_to
  type: dict
  sample: {"sent": true, "mode": "direct", "streamed": true, "dest": "root@10.0.0.12:/var/backups/appvault",
           "path": "/var/backups/appvault/exment-20250101T030000Z-migrate.tar.zst", "size": 52428800,
           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "duration": 4.2,
           "verified_identity": "2049:1835021:52428800:1735700400123456789:1735700400123456789"}
duration:
  description: Seconds the dumps and the archive took.
  returned: success
  type: float
  sample: 21.5
'''

import re
import secrets

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _appdef, _catalog, _common, _hostrun, _transfer
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def argument_spec():
    return dict(
        app=dict(type='dict', required=True, options=_appdef.argument_spec()),
        backup_dir=dict(type='path', required=True),
        token=dict(type='str', no_log=False),
        app_version=dict(type='str'),
        label=dict(type='str'),
        compression=dict(type='str', choices=['zstd', 'gzip'], default='zstd'),
        recipients=dict(type='list', elements='str'),
        checksums=dict(type='bool', default=True),
        keep_last=dict(type='int', no_log=False),
        send_to=dict(type='dict', options=_transfer.connection_options(), mutually_exclusive=[('identity', 'identity_key')]),
        release_lock=dict(type='str', no_log=False),
    )


def run(module):
    p = module.params
    token = p['token'] or secrets.token_hex(8)
    if not re.match(r'^[A-Za-z0-9]+$', token):
        raise AppvaultError('token must be ASCII letters and digits, got %r' % token)
    _common.private_dir(p['backup_dir'])
    config = dict(backup_dir=p['backup_dir'], checksums=p['checksums'], label=p['label'], compression=p['compression'],
                  recipients=p['recipients'], send_to=p['send_to'])
    version = p['app_version'] if p['app_version'] is not None else p['app']['version']
    log = _hostrun.Collect(module.warn)
    result = _hostrun.dump_and_archive(config, p['app'], version, token, log)
    if p['keep_last'] is not None:
        result['pruned'] = _hostrun.retention(p['backup_dir'], p['keep_last'], log, written=result)
    if p['release_lock']:
        try:
            result['lock_released'] = _catalog.RunLock(p['backup_dir'], p['release_lock']).release(warn=module.warn)['changed']
        except OSError as exc:  # the backup is done: the caller releases the lock itself
            module.warn('the backup succeeded, but releasing the run lock failed: %s' % exc)
    return dict(result, changed=True, log=log.lines)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=False)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
