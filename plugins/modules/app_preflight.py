#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: app_preflight
short_description: Check an application environment before a backup or restore changes anything
version_added: 0.1.0
description:
  - Given a resolved environment definition (the result of the P(appvault.backup.app_definition#filter) filter),
    connects to every database (server version, size, whether it exists), finds the client programs each needs,
    reads every path (files, bytes, newest modification time), checks that C(tar), the compressor and, for
    encrypted backups, C(age) are installed, and that the backup directory's file system has room for the
    operation (about twice the raw size for a backup, three times for a restore, plus 10%).
  - With O(archive) (a restore), also reads that archive's manifest and checks its whole sha256 against its checksum
    file, as M(appvault.backup.backup_info) with O(appvault.backup.backup_info#module:verify=true) does, while the
    databases and paths are probed; an archive that cannot be restored is a problem named first. Its manifest then
    gates the restore. With O(verified), a check of that sha256 made moments before (on arrival from another host,
    for one) is trusted while the file is unchanged, and the whole file is not read again (C(trusted) in RV(backup)).
  - With O(manifest) or O(archive) (a restore), also runs the compatibility gate, which blocks what cannot work (a
    dump of another engine, a PostgreSQL dump from a newer major version than the target server, a database or path
    of the backup that the definition does not name) and warns on what is risky (another OS, another MySQL flavour,
    an older MySQL/MariaDB server, another profile). RV(report) compares backup and target side by side.
  - Fails, naming every problem found and changing nothing, when anything is wrong. O(force=true) lets blocked
    gate items pass (they stay in RV(blocked)); other problems always fail.
  - With O(lock), once every check has passed, it also takes the run lock of O(backup_dir) (creating the directory,
    mode 0700) as M(appvault.backup.run_lock) does, from the same code. Nothing is written when a check fails. The
    backup and restore roles take their lock so, one call fewer than a task of its own.
  - Used by the backup and restore roles as their first step on the host.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.app
  - appvault.backup.attributes
  - appvault.backup.verified
attributes:
  check_mode:
    support: full
    details: Only reads; runs the same in check mode. With O(lock) it reports whether the lock could be taken and
      writes nothing.
  diff_mode:
    support: none
options:
  backup_dir:
    description:
      - The backup directory (it need not exist yet; free space is checked on the nearest existing parent).
    type: path
    required: true
  mode:
    description:
      - What is about to happen.
    type: str
    choices: [backup, restore]
    default: backup
  compression:
    description:
      - The compression the backup will use (its program must be installed).
    type: str
    choices: [zstd, gzip]
    default: zstd
  recipients:
    description:
      - age recipients of an encrypted backup (then C(age) must be installed).
    type: list
    elements: str
  manifest:
    description:
      - The manifest of the backup to restore; turns the compatibility gate on.
      - Mutually exclusive with O(archive).
    type: dict
  archive:
    description:
      - The archive to restore, on the host. It is read and verified, and its manifest turns the compatibility gate on;
        RV(backup) and RV(manifest) return what was read. Mutually exclusive with O(manifest).
    type: path
  current_version:
    description:
      - The installed application's version (output of its C(version) command), for the report.
    type: str
  force:
    description:
      - Let blocked gate items pass. The roles set it from C(appvault_restore_force) and log the reason.
    type: bool
    default: false
  lock:
    description:
      - Take the run lock of O(backup_dir) for the run O(lock.token), once every check has passed (see the description).
      - The lock is held until it is released (M(appvault.backup.run_lock) with
        O(appvault.backup.run_lock#module:state=absent), or the modules that end a run) or its lease expires.
    type: dict
    suboptions:
      token:
        description: Identifies the run that holds the lock (one value per run; the roles use a random one).
        type: str
        required: true
      operation:
        description: What the run does, shown to anyone who finds the lock held.
        type: str
        default: operation
      lease:
        description: Seconds the lock stays valid without being renewed. V(0) means no expiry.
        type: int
        default: 3600
      break_lock:
        description:
          - Take the lock even though someone else holds it. Only for a holder known to be dead; the takeover is
            reported in RV(lock_recovered).
        type: bool
        default: false
seealso:
  - module: appvault.backup.backup_info
'''

EXAMPLES = r'''
- name: Check the app before backing it up
  appvault.backup.app_preflight:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
    backup_dir: /var/backups/appvault
  no_log: true
  register: preflight

- name: Check the app, then take the run lock for this backup (creating the backup directory)
  appvault.backup.app_preflight:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
    backup_dir: /var/backups/appvault
    lock:
      token: "{{ run_token }}"
      operation: backup
      lease: 7200
  no_log: true
  register: preflight

- name: Verify the archive and gate its restore
  appvault.backup.app_preflight:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
    backup_dir: /var/backups/appvault
    mode: restore
    archive: /var/backups/appvault/exment-20260101T030000Z.tar.zst
  register: preflight

- name: Gate the restore of an archive that backup_send verified on arrival, without hashing it again
  appvault.backup.app_preflight:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
    backup_dir: /var/backups/appvault
    mode: restore
    archive: "{{ sent.path }}"
    verified:
      sha256: "{{ sent.sha256 }}"
      identity: "{{ sent.verified_identity }}"
  when: sent.verified_identity is defined
  register: preflight
'''

RETURN = r'''
databases:
  description: Per database id - engine, C(server_version), C(major), C(flavour) (MySQL family), C(tools) found,
    C(exists), C(size) in bytes, and C(problem) when it failed.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "main", "engine": "postgresql", "server_version": "15.8", "major": 15, "exists": true, "size": 8421376,
            "tools": {"pg_dump": "/usr/lib/postgresql/15/bin/pg_dump"}}]
paths:
  description: Per path id - C(path), C(exists), C(optional), C(files), C(bytes), C(newest_mtime) (epoch seconds).
  returned: always
  type: list
  elements: dict
  sample: [{"id": "storage", "path": "/srv/app/storage", "exists": true, "optional": false, "files": 1204, "bytes": 73400320,
            "newest_mtime": 1767236400.0}]
free_bytes:
  description: Free bytes on the backup directory's file system.
  returned: always
  type: int
  sample: 53687091200
needed_bytes:
  description: The estimate the free space was checked against.
  returned: always
  type: int
  sample: 179306496
host:
  description: This host's name, OS and Python, as a manifest records them.
  returned: always
  type: dict
  sample: {"hostname": "app1", "os": {"id": "debian", "version_id": "12"}, "python": "3.11.2"}
blocked:
  description: Gate items that block the restore (with O(force=true) they were let through).
  returned: always
  type: list
  elements: str
  sample: []
risks:
  description: Gate items that are risky but allowed (also given as warnings).
  returned: always
  type: list
  elements: str
  sample: ["the backup comes from debian 11, this host runs debian 12: test the restore before relying on it"]
preview:
  description: Readable lines - the report, then each database and path as it is now and what the restore would do with it.
  returned: always
  type: list
  elements: str
  sample: ["path storage /srv/app/storage: 1204 files, 70.0 MiB, newest change 2026-01-01 03:00:00 UTC - moved aside, then replaced"]
backup:
  description:
    - The archive given in O(archive) as M(appvault.backup.backup_info) describes it (name, path, size, sha256,
      C(valid), C(reason), C(verified_identity) ...), also when it is not valid.
    - V(trusted=true) when its sha256 was not computed again but taken from O(verified).
  returned: with O(archive), when the archive exists
  type: dict
  sample: {"name": "exment-20260101T030000Z.tar.zst", "valid": true, "size": 52428800, "sha256": "9f86d081884c7d65..."}
manifest:
  description: The manifest read from O(archive).
  returned: with O(archive), when the archive is valid
  type: dict
  sample: {"format_version": 1, "app": {"name": "exment", "version": "6.1.0"}, "databases": [], "paths": []}
lock:
  description: The run lock as written (as M(appvault.backup.run_lock) returns it).
  returned: with O(lock), when every check passed
  type: dict
  sample: {"token": "a1b2", "operation": "backup", "host": "app1", "pid": 0, "acquired": 1767236400, "expires": 1767243600}
lock_recovered:
  description: The stale (or broken) lock that was taken over, described.
  returned: with O(lock), when a lock was taken over
  type: str
  sample: "backup on app1 since 2026-01-01T03:00:00Z, lease until 2026-01-01T05:00:00Z (lease expired at 2026-01-01T05:00:00Z)"
report:
  description: Backup and target side by side (OS, app, app version, each database's engine and version).
  returned: always
  type: list
  elements: dict
  sample: [{"item": "database main", "backup": "postgresql 15.8", "target": "postgresql 15.8"}]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _appdef, _catalog, _common, _preflight


def argument_spec():
    return dict(
        app=dict(type='dict', required=True, options=_appdef.argument_spec()),
        backup_dir=dict(type='path', required=True),
        mode=dict(type='str', choices=['backup', 'restore'], default='backup'),
        compression=dict(type='str', choices=['zstd', 'gzip'], default='zstd'),
        recipients=dict(type='list', elements='str'),
        manifest=dict(type='dict'),
        archive=dict(type='path'),
        current_version=dict(type='str'),
        force=dict(type='bool', default=False),
        lock=dict(type='dict', options=_catalog.lock_argument_spec()),
        verified=dict(type='dict', options=_catalog.verified_argument_spec()),
    )


def run(module):
    p = module.params
    result = _preflight.run(p['app'], p['backup_dir'], p['mode'], compression=p['compression'], recipients=p['recipients'],
                            manifest=p['manifest'], current_version=p['current_version'], force=p['force'], archive=p['archive'],
                            verified=p['verified'])
    for warning in result['risks']:
        module.warn(warning)
    if result['blocked']:
        module.warn('forced past the gate: %s' % '; '.join(result['blocked']))
    result['changed'] = False
    if p['lock']:
        lock = p['lock']
        taken = _catalog.take_run_lock(p['backup_dir'], lock['token'], lock['operation'], lease=lock['lease'],
                                       break_lock=lock['break_lock'], create=True, check_mode=module.check_mode)
        result.update(lock=taken['lock'], changed=taken['changed'])
        if taken['recovered'] is not None:
            result['lock_recovered'] = taken['recovered']
            module.warn('took over a stale lock: %s' % taken['recovered'])
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, mutually_exclusive=[('manifest', 'archive')])
    _common.finish(module, run)


if __name__ == '__main__':
    main()
