#!/usr/bin/python
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: backup_restore
short_description: Restore every database and path of a backup archive over an application environment, in one step
version_added: 0.1.0
description:
  - Does on the host, in one module call, what the restore role used to do with one call for the archive plus two per
    database. The archive O(src) is verified completely (the C(.sha256) sidecar, then every member against the
    manifest) while its paths are written to private stages beside their destinations and its database dumps to
    O(dumps_dest), as M(appvault.backup.archive_restore) does; only then are the paths swapped in, the current ones
    moved aside to C(<name>-bak-<timestamp>). Then every database of the archive is restored from its dump with the
    code of its engine's restore module (as M(appvault.backup.postgresql_restore), M(appvault.backup.mysql_restore)
    and M(appvault.backup.sqlite_restore) would, with O(app.databases[].options); into a side database that replaces
    the current one only once verified) and checked against the inventory recorded at backup time. O(dumps_dest) is
    removed whatever happens.
  - A dump compressed as a whole (C(pg_dump | zstd), C(mariadb-dump | zstd)) that is restored in parallel comes out
    of the archive already decompressed, by the pass that verifies it; C(pg_restore --jobs) seeks in it without a
    second decompressed copy, and each connection of a MySQL/MariaDB restore (O(appvault.backup.mysql_restore#module:jobs),
    two from 32 MiB on) reads its own range of it instead of decompressing everything before that range.
  - The same steps as the host-side rollback of the maintenance lease (M(appvault.backup.maintenance) with
    O(appvault.backup.maintenance#module:rollback)), from the same code.
  - Made to run asynchronously and be followed by M(appvault.backup.job_wait) with
    O(appvault.backup.job_wait#module:watch) set to O(dumps_dest).
  - Does not take the run lock or switch maintenance mode on; the restore role does that around it, and rolls back to
    the safety snapshot when this module fails after it swapped the paths in.
  - With O(snapshot), it first writes that safety snapshot of the current state, as M(appvault.backup.backup_create)
    does, in the same call.
  - With O(rollback_lease), it then arms the host-side rollback to the snapshot, before anything changes.
  - With O(finish), a restore that succeeded also ends its run, as M(appvault.backup.maintenance) with
    O(appvault.backup.maintenance#module:state=off) does, for a caller that has nothing left to run after it.
author:
  - appvault.backup developers (!UNKNOWN)
extends_documentation_fragment:
  - appvault.backup.app
  - appvault.backup.attributes
  - appvault.backup.verified
attributes:
  check_mode:
    support: none
    details: Use M(appvault.backup.archive_restore) in check mode (and M(appvault.backup.app_preflight)) to see what a
      restore would change.
  diff_mode:
    support: none
options:
  src:
    description:
      - The backup archive to restore.
    type: path
    required: true
  dumps_dest:
    description:
      - Private directory (0700) the database dumps are extracted to and restored from; removed when the module ends.
      - Default C(.restore-<random>) beside O(src).
    type: path
  keep_previous:
    description:
      - How many C(<name>-bak-<timestamp>) copies of each path to keep (the one this run makes always stays).
      - Default all.
    type: int
  identity:
    description:
      - age identity file that decrypts an encrypted archive.
    type: path
  checksums:
    description:
      - Compare per-table content checksums as well as row counts after each database's restore, when the backup
        recorded them.
    type: bool
    default: true
  rehearse:
    description:
      - Restore a MySQL/MariaDB database over an existing one into a side database first and verify it, then once
        more into the real name (see M(appvault.backup.mysql_restore) O(appvault.backup.mysql_restore#module:rehearse)).
      - V(false) drops the existing database once the dump is checked and restores into it once - for a caller that
        keeps a verified copy of the current state; the restore role sets it, it holds a safety snapshot.
      - PostgreSQL databases are always restored into a side database and swapped in by renaming.
    type: bool
    default: true
  rollback_lease:
    description:
      - Before anything changes, arm the maintenance lease of run O(rollback_lease.token) with the plan to put the
        safety snapshot O(rollback_lease.snapshot) back, as M(appvault.backup.maintenance) does with
        O(appvault.backup.maintenance#module:state=on) and O(appvault.backup.maintenance#module:rollback). If the
        controller dies while this restore is going on, the host waits until this job has ended, puts the snapshot back
        and only then runs the application's C(maintenance_off) commands, so an application is never served half
        restored. The lease is renewed by M(appvault.backup.job_wait) with
        O(appvault.backup.job_wait#module:renew_lease) and disarmed by M(appvault.backup.maintenance) with
        O(appvault.backup.maintenance#module:state=off).
      - The plan is built from O(app) (its root, owner, maintenance_off commands and databases with their passwords,
        which are kept in the 0600 lease file only), O(keep_previous), O(src) and O(dumps_dest).
      - The restore role sets it with O(snapshot), one module call fewer than arming it with
        M(appvault.backup.maintenance).
      - When the lease of this run expired before it is armed (its timer fired, so maintenance is off again, for
        instance while the snapshot was written after the controller had died), the module stops before anything
        changes.
    type: dict
    suboptions:
      path:
        description: The directory the lease is recorded in (the backup directory).
        type: path
        required: true
      token:
        description: The run's token, as given to M(appvault.backup.maintenance) and M(appvault.backup.run_lock).
        type: str
        required: true
      lease:
        description: Seconds after which the host acts when nothing renewed the lease; more than V(0).
        type: int
        required: true
      snapshot:
        description:
          - The safety snapshot archive to put back.
          - Required unless O(snapshot) is set; then it is O(snapshot.dest) (a different path is refused).
        type: path
  snapshot:
    description:
      - Before anything changes, write the safety snapshot of the current state to O(snapshot.dest), as
        M(appvault.backup.backup_create) does for O(app) (the databases O(snapshot.databases) dumped into
        C(.work-<token>) beside it, then archived with every path of O(app), a missing one recorded as absent; no
        per-table checksums, never encrypted).
      - The caller names the file, so that it knows where the snapshot is also when this module is killed; its name
        must be the one M(appvault.backup.backup_create) would give it, C(<app>-<UTC yyyymmddThhmmssZ>-<label>.tar.zst)
        (C(.tar.gz) with O(snapshot.compression=gzip)), which is checked before anything is written.
      - When the restore fails after the snapshot was written, the failure's RV(snapshot) names it.
    type: dict
    suboptions:
      databases:
        description: The ids of the databases of O(app) to dump, those that exist now (a restore creates the others).
        type: list
        elements: str
        required: true
      dest:
        description: The snapshot archive to write.
        type: path
        required: true
      token:
        description: The run's token (ASCII letters and digits); names the work directory C(.work-<token>), which
          M(appvault.backup.run_lock) removes with the run's lock if this module is killed.
        type: str
        required: true
      label:
        description: The label in the snapshot's name.
        type: str
        default: pre-restore
      compression:
        description: How the snapshot is compressed.
        type: str
        choices: [zstd, gzip]
        default: zstd
      app_version:
        description: The installed application's version to record (default O(app)'s C(version)).
        type: str
  finish:
    description:
      - Once the restore succeeded, end the run O(finish.token) in O(finish.path) in the same call. First the lease of
        that run is disarmed (its rollback to the safety snapshot is no longer needed), then the run lock is released
        and O(finish.remove_snapshot) deleted, as M(appvault.backup.maintenance) does with
        O(appvault.backup.maintenance#module:state=off), O(appvault.backup.maintenance#module:release_lock) and
        O(appvault.backup.maintenance#module:remove_snapshot), from the same code, one module call fewer.
      - For an application without C(maintenance_off) commands only (they stay with M(appvault.backup.maintenance),
        which runs them with C(become)); refused before anything changes otherwise. The restore role sets it when no
        command or health check follows the restore.
      - When ending the run fails, the restore still succeeded; RV(finish_failed) says why and RV(run_ended) is not
        returned, so the caller ends the run itself.
    type: dict
    suboptions:
      path:
        description: The directory of the run lock and the lease (the backup directory).
        type: path
        required: true
      token:
        description: The run's token, as given to M(appvault.backup.run_lock).
        type: str
        required: true
      remove_snapshot:
        description: The safety snapshot to delete with its sidecars (a missing one is not an error).
        type: path
notes:
  - Database ids of the archive that O(app) does not name are refused before anything changes.
requirements:
  - The client programs of every database engine (C(pg_restore), C(mariadb) or C(mysql)), zstd (or gzip) and, for
    an encrypted archive, age on the managed host.
seealso:
  - module: appvault.backup.archive_restore
  - module: appvault.backup.backup_create
  - module: appvault.backup.job_wait
'''

EXAMPLES = r'''
- name: Restore in the background
  appvault.backup.backup_restore:
    app: "{{ appvault_app | appvault.backup.app_definition }}"
    src: /var/backups/appvault/exment-20250101T030000Z.tar.zst
    dumps_dest: /var/backups/appvault/.restore-1
    keep_previous: 2
  async: 86400
  poll: 0
  register: job

- name: Wait for it, with progress lines
  appvault.backup.job_wait:
    jid: "{{ job.ansible_job_id }}"
    watch: /var/backups/appvault/.restore-1
    patterns: ["*"]
    label: restore
  register: restored
'''

RETURN = r'''
checksum:
  description: Whether the archive's C(.sha256) sidecar was checked (V(ok)) or was missing (V(missing)).
  returned: success
  type: str
  sample: ok
databases:
  description: Per database id of the archive, what its restore did.
  returned: success
  type: dict
  sample: {"main": {"engine": "postgresql", "name": "nocobase", "server_version": "15.8", "tool_version": "15.8",
           "duration": 41.2, "created": false, "decompressed": true}}
paths:
  description: Per path id, where it was restored and what was moved aside (as M(appvault.backup.archive_restore)
    returns it).
  returned: success
  type: dict
  sample: {"attachments": {"dest": "/var/www/exment/storage/app/admin", "changed": true,
           "previous": "/var/www/exment/storage/app/admin-bak-20250101T031500Z", "removed_copies": []}}
log:
  description: What was done, one line per step.
  returned: success
  type: list
  elements: str
  sample: ["verified exment-20250101T030000Z.tar.zst and restored its paths (attachments) in 3.2 s"]
duration:
  description: Seconds the whole restore took.
  returned: success
  type: float
  sample: 52.8
lease:
  description: The lease armed for O(rollback_lease) (as M(appvault.backup.maintenance) returns it).
  returned: when O(rollback_lease) is set
  type: dict
  sample: {"pid": 4711, "expires": 1767243600, "seconds": 3600,
           "rollback": "/var/backups/appvault/exment-20250101T031000Z-pre-restore.tar.zst"}
snapshot:
  description: The safety snapshot written for O(snapshot) (also in the failure of a restore that failed after it).
  returned: when O(snapshot) is set and the snapshot was written
  type: dict
  sample: {"name": "exment-20250101T031000Z-pre-restore.tar.zst",
           "path": "/var/backups/appvault/exment-20250101T031000Z-pre-restore.tar.zst", "size": 52428800,
           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "duration": 4.2}
run_ended:
  description: How O(finish) ended the run (as M(appvault.backup.maintenance) with
    O(appvault.backup.maintenance#module:state=off) returns it).
  returned: when O(finish) is set and the run was ended
  type: dict
  sample: {"disarmed": true, "lock_released": true,
           "snapshot_removed": ["/var/backups/appvault/exment-20250101T031000Z-pre-restore.tar.zst"]}
finish_failed:
  description: Why O(finish) could not end the run after the restore succeeded; the caller ends it itself.
  returned: when O(finish) is set and ending the run failed
  type: str
  sample: "/var/backups/appvault: Permission denied"
'''

import os
import re
import secrets
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.appvault.backup.plugins.module_utils import _appdef, _catalog, _common, _hostrun, _maintenance
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def argument_spec():
    return dict(
        app=dict(type='dict', required=True, options=_appdef.argument_spec()),
        src=dict(type='path', required=True),
        dumps_dest=dict(type='path'),
        keep_previous=dict(type='int'),
        identity=dict(type='path'),
        checksums=dict(type='bool', default=True),
        rehearse=dict(type='bool', default=True),
        verified=dict(type='dict', options=_catalog.verified_argument_spec()),
        rollback_lease=dict(type='dict', options=dict(
            path=dict(type='path', required=True),
            token=dict(type='str', required=True, no_log=False),
            lease=dict(type='int', required=True),
            snapshot=dict(type='path'),
        )),
        snapshot=dict(type='dict', options=dict(
            databases=dict(type='list', elements='str', required=True),
            dest=dict(type='path', required=True),
            token=dict(type='str', required=True, no_log=False),
            label=dict(type='str', default='pre-restore'),
            compression=dict(type='str', choices=['zstd', 'gzip'], default='zstd'),
            app_version=dict(type='str'),
        )),
        finish=dict(type='dict', options=dict(
            path=dict(type='path', required=True),
            token=dict(type='str', required=True, no_log=False),
            remove_snapshot=dict(type='path'),
        )),
    )


def check_options(p):
    """Everything about the options that can be refused before anything is written."""
    if p['finish'] and (p['app']['commands'] or {}).get('maintenance_off'):
        raise AppvaultError('finish cannot end a run whose application has maintenance_off commands: leave finish out and '
                            'switch maintenance off with appvault.backup.maintenance; nothing was changed')
    arm, snap = p['rollback_lease'], p['snapshot']
    if arm and arm['lease'] <= 0:
        raise AppvaultError('rollback_lease.lease must be more than 0 seconds, got %d' % arm['lease'])
    if arm and not snap and not arm['snapshot']:
        raise AppvaultError('rollback_lease.snapshot is required unless snapshot is set; nothing was changed')
    if not snap:
        return
    if arm and arm['snapshot'] and os.path.abspath(arm['snapshot']) != os.path.abspath(snap['dest']):
        raise AppvaultError('rollback_lease.snapshot %s is not snapshot.dest %s; nothing was changed' % (arm['snapshot'], snap['dest']))
    if not re.match(r'^[A-Za-z0-9]+$', snap['token']):
        raise AppvaultError('snapshot.token must be ASCII letters and digits, got %r' % snap['token'])
    unknown = sorted(set(snap['databases']) - set(db['id'] for db in p['app']['databases']))
    if unknown:
        raise AppvaultError('snapshot.databases names %s, which app does not; nothing was changed' % ', '.join(unknown))
    app_name = p['app']['name']
    name = os.path.basename(snap['dest'])
    when = _catalog.name_time(name)
    wanted = _catalog.archive_name(app_name, when, snap['label'], snap['compression']) if when else None
    if name != wanted:
        raise AppvaultError('snapshot.dest %s must be named as backup_create names a backup of %s labelled %s (%s); nothing '
                            'was changed' % (snap['dest'], app_name, snap['label'], wanted or
                                             _catalog.archive_name(app_name, _catalog.utc_now(), snap['label'], snap['compression'])))


def take_snapshot(app, snap, log):
    """The safety snapshot of the current state of ``app`` at snap['dest'] (its databases snap['databases'], every path
    optional), as backup_create writes a backup; returns its facts."""
    dest = os.path.abspath(snap['dest'])
    config = dict(backup_dir=os.path.dirname(dest), checksums=False, label=snap['label'], compression=snap['compression'],
                  recipients=None)
    current = dict(app, databases=[db for db in app['databases'] if db['id'] in snap['databases']],
                   paths=[dict(path, optional=True) for path in app['paths']])
    _common.private_dir(config['backup_dir'])
    version = snap['app_version'] if snap['app_version'] is not None else app['version']
    written = _hostrun.dump_and_archive(config, current, version, snap['token'], log, dest=dest,
                                        now=_catalog.name_time(os.path.basename(dest)))
    log.info('safety snapshot %s written: %s in %.1f s' % (written['name'], _common.human_size(written['size']), written['duration']))
    return dict((key, written[key]) for key in ('name', 'path', 'size', 'sha256', 'duration'))


def arm_rollback(p, dumps_dest, snapshot):
    """The host-side rollback of p['rollback_lease'] to ``snapshot``, armed as maintenance's state=on with a rollback
    plan does; refused when this run's lease expired already (maintenance is off again: nothing may change now)."""
    arm = p['rollback_lease']
    app = p['app']
    lease = _maintenance.Lease(arm['path'], arm['token'])
    expired = lease.expired()
    if expired:
        raise AppvaultError('%s, before the restore began (nothing renewed it); nothing was restored' % expired)
    plan = _maintenance.rollback_plan(snapshot, app, arm['token'], keep_previous=p['keep_previous'],
                                      in_use=[p['src'], dumps_dest])
    off = (app['commands'] or {}).get('maintenance_off') or []
    armed = lease.on([], off, arm['lease'], chdir=app['root'], owner=app['owner'], rollback=plan)
    return armed['lease']


def run(module):
    p = module.params
    started = time.monotonic()
    dumps_dest = p['dumps_dest'] or os.path.join(os.path.dirname(os.path.abspath(p['src'])), '.restore-%s' % secrets.token_hex(8))
    check_options(p)
    log = _hostrun.Collect(module.warn)
    snapshot = take_snapshot(p['app'], p['snapshot'], log) if p['snapshot'] else None
    try:
        lease = None
        if p['rollback_lease']:
            lease = arm_rollback(p, dumps_dest, snapshot['path'] if snapshot else p['rollback_lease']['snapshot'])
        result = _hostrun.restore_archive(p['app'], p['src'], dumps_dest, keep_previous=p['keep_previous'],
                                          identity=p['identity'], checksums=p['checksums'], rehearse=p['rehearse'], log=log,
                                          verified=p['verified'])
    except AppvaultError as exc:
        if snapshot is not None:  # the caller's rollback needs it
            exc.details['snapshot'] = snapshot
        raise
    result = dict(result, changed=True, log=log.lines, duration=round(time.monotonic() - started, 3))
    if snapshot is not None:
        result['snapshot'] = snapshot
    if lease is not None:
        result['lease'] = lease
    if p['finish']:
        end = p['finish']
        try:
            result['run_ended'] = _maintenance.end_run(end['path'], end['token'], [], release_lock=True,
                                                       remove_snapshot=end['remove_snapshot'], warn=module.warn)
        except (AppvaultError, OSError) as exc:  # the restore is done: the caller ends the run itself
            result['finish_failed'] = getattr(exc, 'msg', None) or str(exc)
            module.warn('the restore succeeded, but ending its run failed: %s' % result['finish_failed'])
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=False)
    _common.finish(module, run)


if __name__ == '__main__':
    main()
