# Build the fixture app's file tree the way a real app's storage looks: many small attachments in nested
# directories (some with Japanese names), a few MB-sized binaries, plugins with executables, logs, sessions,
# a symlink, an empty directory and several modes. Deterministic (seeded), owned by the app user.
#
#   python3 make_tree.py ROOT USER
from __future__ import annotations

import os
import pwd
import random
import sys

NAMES = ['請求書', '見積書', 'レポート', '議事録', 'invoice', 'photo', 'notes', 'データ', 'contract', 'スキャン']
EXTS = ['.pdf', '.txt', '.png', '.csv', '.docx', '.json']


def write(path, data, mode, uid, gid):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(data)
    os.chmod(path, mode)
    os.chown(path, uid, gid)


def main():
    root, user = sys.argv[1], sys.argv[2]
    entry = pwd.getpwnam(user)
    uid, gid = entry.pw_uid, entry.pw_gid
    rng = random.Random(20240601)
    storage = os.path.join(root, 'storage')

    # attachments/<year>/<month>/<record>/<file>: 480 small files
    for number in range(480):
        year = 2023 + number % 2
        month = 1 + number % 12
        record = number // 6
        name = '%s_%04d%s' % (NAMES[number % len(NAMES)], number, EXTS[number % len(EXTS)])
        if number % 17 == 0:
            name = 'スペース 入り %d.txt' % number
        size = rng.randint(0, 6000)
        mode = 0o600 if number % 11 == 0 else 0o640
        path = os.path.join(storage, 'app', 'attachments', str(year), '%02d' % month, 'record-%03d' % record, name)
        write(path, rng.randbytes(size), mode, uid, gid)

    # a few larger binaries (1-3 MB), incompressible
    for number, megabytes in enumerate((1, 2, 3)):
        path = os.path.join(storage, 'app', 'attachments', 'large', '動画-%d.bin' % number)
        write(path, rng.randbytes(megabytes * 1024 * 1024 + rng.randint(0, 4096)), 0o640, uid, gid)

    # plugins: metadata, code and an executable
    for plugin in ('calendar', 'export-csv', 'カスタム帳票'):
        base = os.path.join(storage, 'app', 'plugins', plugin)
        write(os.path.join(base, 'plugin.json'), ('{"name": "%s", "version": "1.%d.0"}\n' % (plugin, len(plugin))).encode(), 0o644, uid, gid)
        write(os.path.join(base, 'src', 'index.js'), ('module.exports = () => "%s";\n' % plugin).encode() * 20, 0o644, uid, gid)
        write(os.path.join(base, 'bin', 'run.sh'), b'#!/bin/sh\necho running\n', 0o755, uid, gid)

    # secrets and sessions only the app may read
    write(os.path.join(storage, 'app', 'keys', 'oauth-private.key'), rng.randbytes(1675), 0o600, uid, gid)
    for _session in range(12):
        write(os.path.join(storage, 'framework', 'sessions', 'sess_%032x' % rng.getrandbits(128)), rng.randbytes(300), 0o600, uid, gid)

    # logs
    for day in range(1, 6):
        lines = ''.join('[2024-06-%02d 10:%02d:00] production.INFO: request %d ユーザー操作\n' % (day, minute, minute) for minute in range(60))
        write(os.path.join(storage, 'logs', 'laravel-2024-06-%02d.log' % day), lines.encode(), 0o644, uid, gid)
    write(os.path.join(storage, 'logs', 'worker.log'), b'', 0o644, uid, gid)

    # an empty directory, a symlink inside the tree, and directory modes other than 0755
    for path, mode in ((os.path.join(storage, 'framework', 'cache', 'data'), 0o755),
                       (os.path.join(storage, 'app', 'attachments', 'empty-folder'), 0o750),
                       (os.path.join(storage, 'app', 'keys'), 0o700)):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    os.makedirs(os.path.join(storage, 'app', 'public'), exist_ok=True)
    link = os.path.join(storage, 'app', 'public', 'latest-report')
    if not os.path.lexists(link):
        os.symlink('../attachments/2024/02/record-000/見積書_0001.txt', link)

    for directory, _dirs, files in os.walk(root):
        os.chown(directory, uid, gid)
        for name in files:
            os.lchown(os.path.join(directory, name), uid, gid)
    os.lchown(link, uid, gid)


if __name__ == '__main__':
    main()
