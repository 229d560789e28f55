"""Off-host destinations against real servers: `rclone serve s3` as the S3 endpoint, sshd in a podman test host as the
SFTP server, and an rclone `alias` remote (a configured remote of another kind) for the generic `rclone` kind.

One S3 server and one SFTP host serve the whole module. The scenario backs up, uploads to every destination, deletes
the local copy and restores from each; the failure tests break an upload (a full disk behind the SFTP server, rclone
killed mid-transfer) and check that it is reported and nothing is left looking valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _transfer
from harness.common import REPO, free_port, run_module, run_module_sampling_argv
import test_roles
from test_roles import run_book

pg_app = test_roles.pg_app  # the fixture app of the role tests, used here too
RCLONE = str(Path(sys.executable).parent / 'rclone')
S3_KEY_ID = 'appvault-test'
S3_SECRET = 'S3-secret-%s' % secrets.token_hex(8)
SFTP_PASSWORD = 'sftp-Pw-%s' % secrets.token_hex(6)


@pytest.fixture(scope='module')
def s3(tmp_path_factory):
    """`rclone serve s3` on a free loopback port; the key pair is handed over in its environment, not its argv."""
    root = tmp_path_factory.mktemp('s3root')
    (root / 'backups').mkdir()
    port = free_port()
    env = dict(os.environ, RCLONE_AUTH_KEY='"%s,%s"' % (S3_KEY_ID, S3_SECRET))
    proc = subprocess.Popen([RCLONE, 'serve', 's3', '--addr', '127.0.0.1:%d' % port, str(root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc)
    yield dict(root=root, destination=dict(name='offsite', kind='s3', endpoint='http://127.0.0.1:%d' % port, bucket='backups',
                                           prefix='fixture', access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET,
                                           upload_cutoff='1M', chunk_size='5M', storage_class='STANDARD'))
    proc.terminate()
    proc.wait(timeout=30)


def wait_for_port(port, proc=None, banner=None, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError('the server on port %d exited with %s' % (port, proc.returncode))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=5) as sock:
                if banner is None or sock.recv(64).startswith(banner):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError('nothing answered on 127.0.0.1:%d' % port)


def podman(*argv):
    proc = subprocess.run(['podman'] + list(argv), capture_output=True, text=True, check=False)
    if proc.returncode:
        raise AssertionError('podman %s failed (%d): %s' % (' '.join(argv[:3]), proc.returncode, proc.stderr[-2000:]))
    return proc.stdout


@pytest.fixture(scope='module')
def sftp(tmp_path_factory):
    """sshd in a podman host from the test image: user `offsite` (password), /srv/backups, and a 1 MiB tmpfs /srv/tiny."""
    work = tmp_path_factory.mktemp('sftp')
    image = subprocess.run(['bash', str(REPO / 'tests' / 'setup' / 'images.sh'), 'bookworm'],
                           capture_output=True, text=True, check=True).stdout.split()[-1]
    name = 'appvault-dest-%s' % secrets.token_hex(5)
    root_key = work / 'id_ed25519'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'appvault-dest-test', '-f', str(root_key)], check=True)
    podman('network', 'create', '--disable-dns', name)
    try:
        podman('run', '--detach', '--name', name, '--network', name, '--publish', '127.0.0.1::22',
               '--tmpfs', '/srv/tiny:rw,size=1m,mode=1777', '--env', 'PW=%s' % SFTP_PASSWORD,
               '--env', 'AUTHORIZED_KEY=%s' % Path(str(root_key) + '.pub').read_text().strip(), image, '/bin/sh', '-c',
               'useradd -m -s /bin/sh offsite && echo "offsite:$PW" | chpasswd && install -d -o offsite -m 0700 /srv/backups'
               ' && install -d -m 0700 /root/.ssh && printf "%s\\n" "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys'
               ' && install -d -m 0755 /run/sshd && ssh-keygen -A && exec /usr/sbin/sshd -D -e')
        port = int(podman('port', name, '22/tcp').rsplit(':', 1)[1])
        wait_for_port(port, banner=b'SSH-2.0-OpenSSH')
        known = work / 'known_hosts'
        keys = subprocess.run(['ssh-keyscan', '-p', str(port), '127.0.0.1'], capture_output=True, text=True, check=True).stdout
        known.write_text(keys)
        destination = dict(name='nas', kind='sftp', host='127.0.0.1', port=port, user='offsite', password=SFTP_PASSWORD,
                           known_hosts_file=str(known), path='/srv/backups')

        def sh(script):
            return podman('exec', name, 'sh', '-c', script)
        # The same container as an inventory host, for the host destination (root over SSH with its own key).
        inventory_host = dict(ansible_host='127.0.0.1', ansible_port=port, ansible_user='root', ansible_ssh_private_key_file=str(root_key),
                              ansible_python_interpreter='/usr/bin/python3',
                              ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null')
        yield dict(destination=destination, sh=sh, port=port, inventory_host=inventory_host, name=name)
    finally:
        subprocess.run(['podman', 'rm', '--force', '--time', '0', name], capture_output=True, check=False)
        subprocess.run(['podman', 'network', 'rm', '--force', name], capture_output=True, check=False)


@pytest.fixture
def vault(tmp_path):
    """A configured rclone remote of another kind (alias of a local folder), given as config text."""
    folder = tmp_path / 'vault'
    folder.mkdir()
    return dict(folder=folder, destination=dict(name='vault', kind='rclone', remote='vault', path='appvault',
                                                config_content='[vault]\ntype = alias\nremote = %s\n' % folder))


def listing(destination):
    result = run_module('backup_info', dict(destination=destination))
    assert not result.get('failed'), result.get('msg')
    return result


def restore_from(app, name, destinations):
    proc, data, failures = run_book('restore.yml', app.inventory, {
        'appvault_restore_confirm': True, 'appvault_restore_from': name, 'appvault_backup_destinations': destinations})
    assert proc.returncode == 0 and not failures, (failures, proc.stdout[-3000:])
    return data['global_custom_stats']['appvault_restore']['localhost']


def test_backup_to_every_destination_then_restore_from_each(pg_app, s3, sftp, vault):
    destinations = [s3['destination'], sftp['destination'], dict(vault['destination'], keep_last=1)]
    before = pg_app.state()
    proc, data, failures = run_book('backup.yml', pg_app.inventory, {'appvault_backup_destinations': destinations})
    assert proc.returncode == 0 and not failures, (failures, proc.stdout[-3000:])
    summary = data['global_custom_stats']['appvault_backup']['localhost']
    name = summary['name']
    copies = {c['name']: c for c in summary['destinations']}
    assert sorted(copies) == ['nas', 'offsite', 'vault'] and not any(c['failed'] for c in copies.values()), copies
    assert copies['offsite']['verified'] == 'md5' and copies['nas']['verified'] in ('sha256', 'md5')
    assert copies['vault']['verified'] == 'sha256'
    assert S3_SECRET not in proc.stdout and SFTP_PASSWORD not in proc.stdout
    # The bytes are there, with the checksum file, at each destination.
    stored = s3['root'] / 'backups' / 'fixture' / name
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == summary['sha256']
    assert sftp['sh']('sha256sum /srv/backups/%s' % name).split()[0] == summary['sha256']
    assert (vault['folder'] / 'appvault' / (name + '.sha256')).read_text().split()[0] == summary['sha256']

    proc, data, failures = run_book('list.yml', pg_app.inventory, {'appvault_destination': 'nas', 'appvault_list_verify': True,
                                                                   'appvault_backup_destinations': destinations})
    assert proc.returncode == 0 and not failures, failures
    assert data['global_custom_stats']['appvault_list']['localhost'] == [name]
    table = next(r for p in data['plays'] for t in p['tasks'] if t['task']['name'] == 'Show the catalogue' for r in t['hosts'].values())['msg']
    assert table[1].startswith(name) and table[1].endswith('valid'), table

    # The host loses its backups; each destination brings the app back.
    for destination in ('offsite', 'nas', 'vault'):
        shutil.rmtree(pg_app.backups)
        pg_app.damage()
        assert pg_app.state() != before
        result = restore_from(pg_app, destination, destinations)
        assert result['name'] == name and result['sha256'] == summary['sha256'] and result['checksum'] == 'ok'
        assert pg_app.state() == before, destination

    # A second backup: the vault keeps only the newest (its own keep_last 1), the others keep both.
    proc, data, failures = run_book('backup.yml', pg_app.inventory, {'appvault_backup_destinations': destinations})
    assert proc.returncode == 0 and not failures, failures
    second = data['global_custom_stats']['appvault_backup']['localhost']['name']
    assert [b['name'] for b in listing(vault['destination'])['backups']] == [second]
    assert sorted(p.name for p in (vault['folder'] / 'appvault').iterdir()) == [second, second + '.sha256']
    assert [b['name'] for b in listing(s3['destination'])['backups']] == [second, name]
    proc, data, failures = run_book('prune.yml', pg_app.inventory, {'appvault_destination': 'offsite', 'appvault_backup_keep': 1,
                                                                    'appvault_backup_destinations': destinations})
    assert proc.returncode == 0 and not failures, failures
    assert sorted(p.name for p in (s3['root'] / 'backups' / 'fixture').iterdir()) == [second, second + '.sha256']


def fake_backup(directory, size, name='fixture-20260101T030000Z.tar.zst'):
    """An archive-named file of random bytes with its checksum file (uploads do not read archives)."""
    directory.mkdir(exist_ok=True)
    archive = directory / name
    archive.write_bytes(os.urandom(size))
    (directory / (name + '.sha256')).write_text('%s  %s\n' % (hashlib.sha256(archive.read_bytes()).hexdigest(), name))
    return archive


def test_full_disk_at_the_sftp_server_is_reported_and_nothing_is_left(tmp_path, sftp):
    archive = fake_backup(tmp_path / 'local', 3 * 1024 * 1024)
    destination = dict(sftp['destination'], name='tiny', path='/srv/tiny', retries=1)
    result = run_module('backup_upload', dict(archive=str(archive), destination=destination))
    assert result.get('failed'), result
    assert 'upload of %s to destination tiny failed after 2 attempts' % archive.name in result['msg'], result['msg']
    assert result['left_behind'] is False and 'nothing was left there' in result['msg']
    assert SFTP_PASSWORD not in str(result)
    assert sftp['sh']('ls -A /srv/tiny').split() == []
    assert listing(destination)['backups'] == []


def test_killed_upload_is_reported_and_a_stray_partial_object_is_invalid(tmp_path, s3):
    archive = fake_backup(tmp_path / 'local', 4 * 1024 * 1024)
    destination = dict(s3['destination'], name='slow', prefix='killed', bwlimit='400k', retries=0)
    results = []
    upload = threading.Thread(target=lambda: results.append(run_module('backup_upload', dict(archive=str(archive), destination=destination))))
    upload.start()
    killed = None
    end = time.monotonic() + 60
    while killed is None and time.monotonic() < end and upload.is_alive():
        for pid in os.listdir('/proc'):
            try:
                argv = Path('/proc/%s/cmdline' % pid).read_bytes().split(b'\0')
            except (OSError, ValueError):
                continue
            if b'copyto' in argv and str(archive).encode() in argv:
                time.sleep(2)  # well into the transfer (4 MiB at 400 KiB/s)
                os.kill(int(pid), signal.SIGKILL)
                killed = int(pid)
                break
        time.sleep(0.1)
    upload.join(timeout=120)
    assert killed, 'no rclone transfer was seen'
    result = results[0]
    assert result.get('failed'), result
    assert 'failed after 1 attempt (' in result['msg'] and 'exit status -9' in result['msg'], result['msg']
    assert listing(destination)['backups'] == [], 'nothing published'
    folder = s3['root'] / 'backups' / 'killed'
    assert not folder.exists() or not any(folder.iterdir())
    # What another tool (or a crash between upload and checksum) leaves: a truncated object, no checksum file.
    truncated = tmp_path / 'truncated'
    truncated.write_bytes(archive.read_bytes()[:1000])
    subprocess.run([RCLONE, 'copyto', str(truncated), 'other:backups/killed/' + archive.name], check=True, capture_output=True,
                   env=dict(os.environ, RCLONE_CONFIG_OTHER_TYPE='s3', RCLONE_CONFIG_OTHER_PROVIDER='Other',
                            RCLONE_CONFIG_OTHER_ENDPOINT=destination['endpoint'], RCLONE_CONFIG_OTHER_ACCESS_KEY_ID=S3_KEY_ID,
                            RCLONE_CONFIG_OTHER_SECRET_ACCESS_KEY=S3_SECRET))
    entry = listing(destination)['backups'][0]
    assert entry['valid'] is False and 'no checksum file' in entry['reason'], entry
    download = run_module('backup_download', dict(destination=destination, dest_dir=str(tmp_path)))
    assert download.get('failed') and 'holds no valid backup' in download['msg'], download


def test_secrets_stay_out_of_argv_and_results(tmp_path, s3, sftp):
    archive = fake_backup(tmp_path / 'local', 64 * 1024)
    rc, leaks, seen = run_module_sampling_argv('backup_upload', dict(archive=str(archive), destination=s3['destination']),
                                               S3_SECRET, ['rclone'])
    assert rc == 0 and leaks == [] and seen, (rc, leaks)
    rc, leaks, seen = run_module_sampling_argv('backup_upload', dict(archive=str(archive), destination=sftp['destination']),
                                               SFTP_PASSWORD, ['rclone'])
    assert rc == 0 and leaks == [] and seen, (rc, leaks)
    result = run_module('backup_upload', dict(archive=str(archive), destination=sftp['destination']))
    assert result['changed'] is False and SFTP_PASSWORD not in str(result['_run'].stdout)


def test_bad_destinations_are_named_before_anything_changes(pg_app, s3):
    cases = [
        (dict(name='h', kind='host', host='nowhere', path='/srv/x'), 'destination h (kind host) needs host, another host of the inventory (got nowhere)'),
        (dict(name='n', bucket='backups'), 'every entry of appvault_backup_destinations needs a kind and a name'),
        (dict(name='b', kind='s3'), 'destination b (s3) needs bucket'),
        (dict(s3['destination'], prefix='../up'), "prefix '../up' must not contain"),
        (dict(s3['destination'], secret_access_key='wrong-secret'), 'destination offsite:'),
    ]
    for destination, message in cases:
        proc, _data, failures = run_book('backup.yml', pg_app.inventory, {'appvault_backup_destinations': [destination]})
        assert proc.returncode != 0 and message in proc.stdout, (message, failures)
        assert 'wrong-secret' not in proc.stdout
    assert not pg_app.backups.exists() or not list(pg_app.backups.glob('fixture-*')), 'nothing was backed up'


def test_host_destination_through_the_migrate_transfer(pg_app, sftp):
    """kind host: the archive goes to another inventory host by the migrate role's transfer; list, prune and restore work there."""
    inventory = json.loads(pg_app.inventory.read_text())
    inventory['all']['children']['vaults'] = {'hosts': {'vaulthost': sftp['inventory_host']}}
    pg_app.inventory.write_text(json.dumps(inventory))
    destinations = [dict(name='standby', kind='host', host='vaulthost', path='/srv/hostcopies', address='127.0.0.1',
                         port=sftp['port'], user='root', keep_last=1)]
    names = []
    for _round in range(2):
        proc, data, failures = run_book('backup.yml', pg_app.inventory, {'appvault_backup_destinations': destinations})
        assert proc.returncode == 0 and not failures, (failures, proc.stdout[-3000:])
        summary = data['global_custom_stats']['appvault_backup']['localhost']
        copy = summary['destinations'][0]
        assert copy['name'] == 'standby' and copy['mode'] == 'direct' and not copy['failed'], copy
        assert sftp['sh']('sha256sum /srv/hostcopies/%s' % summary['name']).split()[0] == summary['sha256']
        names.append(summary['name'])
    # keep_last 1 there: only the second is left, with its checksum file; the local directory keeps both.
    assert sftp['sh']('ls -A /srv/hostcopies').split() == [names[1], names[1] + '.sha256']
    # The ephemeral keys were authorized for their transfers only.
    assert 'appvault-transfer-' not in sftp['sh']('cat /root/.ssh/authorized_keys 2>/dev/null || true')
    assert {names[0], names[1]} <= set(p.name for p in pg_app.backups.iterdir())
    proc, data, failures = run_book('list.yml', pg_app.inventory, {'appvault_destination': 'standby', 'appvault_list_verify': True,
                                                                   'appvault_backup_destinations': destinations})
    assert proc.returncode == 0 and not failures, failures
    assert data['global_custom_stats']['appvault_list']['localhost'] == [names[1]]
    # Restore straight from there, with the local copies gone: brought back through the controller, verified, restored.
    before = pg_app.state()
    for name in names:
        for path in pg_app.backups.glob(name + '*'):
            path.unlink()
    pg_app.damage()
    restored = restore_from(pg_app, 'standby', destinations)
    assert restored['name'] == names[1] and restored['checksum'] == 'ok', restored
    assert pg_app.state() == before
    assert (pg_app.backups / names[1]).exists() and (pg_app.backups / (names[1] + '.sha256')).exists()
    assert not [p.name for p in pg_app.backups.iterdir() if p.name.endswith('.download')], 'no temporary copy is left'
    proc, _data, failures = run_book('restore.yml', pg_app.inventory, {'appvault_restore_confirm': True, 'appvault_restore_from': 'standby',
                                                                       'appvault_restore_backup': names[0],
                                                                       'appvault_backup_destinations': destinations})
    assert proc.returncode != 0 and 'holds no valid backup %s' % names[0] in str(failures), failures


def test_send_reports_a_target_it_cannot_reach_when_asked(tmp_path):
    """unreachable: report - a closed port is a result (the role then falls back to the controller), not a failure;
    the private key given as a secret is in no output."""
    private, public = _transfer.keypair('appvault-transfer-test')
    archive = tmp_path / 'app-20250101T000000Z.tar.zst'
    archive.write_bytes(b'not sent\n')
    args = dict(src=str(archive), dest='root@127.0.0.1:/var/tmp/never', port=free_port(), identity_key=private,
                host_keys=[public], connect_timeout=5, unreachable='report')
    result = run_module('backup_send', args)
    assert not result.get('failed'), result.get('msg')
    assert result['reachable'] is False and 'cannot log in to 127.0.0.1' in result['reason'], result
    assert result['changed'] is False
    output = result['_run'].stdout + result['_run'].stderr
    assert private.split('\n')[1] not in output and 'BEGIN OPENSSH PRIVATE KEY' not in output
    failed = run_module('backup_send', dict(args, unreachable='fail'))
    assert failed.get('failed') and 'connecting to 127.0.0.1' in failed['msg'], failed


def test_backup_streams_its_archive_to_a_host_while_writing_it(two_engine_app, sftp):
    """backup_create send_to: the archive arrives on the other host, verified there and renamed into place, by the time
    the backup ends; a stream that cannot finish (a full disk there, a closed port) leaves the backup standing."""
    app, definition = two_engine_app
    (Path(definition['paths'][0]['path']) / 'incompressible.bin').write_bytes(os.urandom(3 * 1024 * 1024))
    private = Path(sftp['inventory_host']['ansible_ssh_private_key_file']).read_text()
    send_to = dict(dest='root@127.0.0.1:/srv/streamed', port=sftp['port'], identity_key=private,
                   known_hosts=sftp['destination']['known_hosts_file'])
    result = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), label='stream', send_to=send_to))
    assert not result.get('failed'), result.get('msg')
    name, sent = result['name'], result['sent']
    assert sent['sent'] is True and sent['streamed'] is True, sent
    assert sent['size'] == result['size'] > 3 * 1024 * 1024 and sent['sha256'] == result['sha256']
    assert sent['path'] == '/srv/streamed/' + name
    there = sftp['sh']('cd /srv/streamed && ls -A && sha256sum %s && cat %s.sha256 && stat -c "%%a %%n" %s . ' % (name, name, name)).split('\n')
    assert there[:2] == [name, name + '.sha256'], there  # nothing else: no partial left
    assert there[2].split()[0] == there[3].split()[0] == result['sha256']
    assert there[4:6] == ['600 %s' % name, '700 .'], there
    # its identity there right after the check, for a restore there to trust it (app_preflight's verified)
    identity = sftp['sh']('python3 -c "import os; s = os.stat(\'/srv/streamed/%s\'); '
                          'print(\'%%d:%%d:%%d:%%d:%%d\' %% (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns))"' % name)
    assert sent['verified_identity'] == identity.strip(), (sent, identity)
    assert any(line.startswith('streamed %s to root@127.0.0.1:/srv/streamed' % name) for line in result['log']), result['log']
    output = result['_run'].stdout + result['_run'].stderr
    assert private.split('\n')[1] not in output and 'BEGIN OPENSSH PRIVATE KEY' not in output
    # 1 MiB of room there: the receiver fails, the backup is complete here all the same and says why it was not sent.
    full = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), label='full',
                                            send_to=dict(send_to, dest='root@127.0.0.1:/srv/tiny')))
    assert not full.get('failed'), full.get('msg')
    assert full['sent']['sent'] is False and 'No space left on device' in full['sent']['reason'], full['sent']
    assert hashlib.sha256(Path(full['path']).read_bytes()).hexdigest() == full['sha256']
    left = sftp['sh']('ls -A /srv/tiny').split()
    assert left == ['.%s.partial' % full['name']], left  # kept for backup_send to resume; never under the archive's name
    sftp['sh']('rm -f /srv/tiny/.*.partial')
    closed = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), label='closed',
                                              send_to=dict(send_to, port=free_port(), connect_timeout=5)))
    assert not closed.get('failed'), closed.get('msg')
    assert closed['sent']['sent'] is False and 'Connection refused' in closed['sent']['reason'], closed['sent']
    assert Path(closed['path']).exists()


def test_a_stalled_stream_is_given_up_and_backup_send_resumes_its_partial(two_engine_app, sftp):
    """The receiver stops (SIGSTOP) once it has written part of the archive: after send_to's timeout the backup gives
    the stream up and ends, complete here; backup_send then resumes the partial the stream left (what the migrate
    role's transfer does when the stream did not finish) and the archive arrives whole."""
    app, definition = two_engine_app
    (Path(definition['paths'][0]['path']) / 'incompressible.bin').write_bytes(os.urandom(192 * 1024 * 1024))
    private = Path(sftp['inventory_host']['ansible_ssh_private_key_file']).read_text()
    known_hosts = sftp['destination']['known_hosts_file']
    sftp['sh']('mkdir -p -m 0700 /srv/stalled')
    # Stop the receiving python3 as soon as its partial holds data (the archive's first megabytes). "[h]": the pattern
    # must not match the shell that runs pkill.
    stopper = subprocess.Popen(['podman', 'exec', sftp['name'], 'sh', '-c',
                                'while ! [ -s "$(ls -d /srv/stalled/.*.partial 2>/dev/null | head -n 1)" ]; do sleep 0.01; done;'
                                ' pkill -STOP -f "import [h]ashlib, os, sys"'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        result = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), label='stalled',
                                                  send_to=dict(dest='root@127.0.0.1:/srv/stalled', port=sftp['port'],
                                                               identity_key=private, known_hosts=known_hosts, timeout=3)))
        assert stopper.wait(timeout=30) == 0, stopper.stderr.read()
    finally:
        if stopper.poll() is None:
            stopper.kill()
        sftp['sh']('pkill -KILL -f "import [h]ashlib, os, sys" || true')
    assert not result.get('failed'), result.get('msg')
    assert result['sent']['sent'] is False and 'took no byte for 3 s' in result['sent']['reason'], result['sent']
    assert any('took no byte for 3 s' in warning for warning in result.get('warnings', [])), result.get('warnings')
    partial = '/srv/stalled/.%s.partial' % result['name']
    kept = int(sftp['sh']('stat -c %%s %s' % partial))
    assert 0 < kept < result['size'], (kept, result['size'])
    sent = run_module('backup_send', dict(src=result['path'], dest='root@127.0.0.1:/srv/stalled', port=sftp['port'],
                                          identity_key=private, known_hosts=known_hosts))
    assert not sent.get('failed'), sent.get('msg')
    assert sent['resumed_bytes'] == kept and sent['sha256'] == result['sha256'], sent
    size = sftp['sh']('stat -c %%s /srv/stalled/%s' % result['name']).strip()
    assert sent['verified_identity'].split(':')[2] == size == str(result['size']), sent
    there = sftp['sh']('cd /srv/stalled && ls -A && sha256sum %s' % result['name']).split()
    assert there == [result['name'], result['name'] + '.sha256', result['sha256'], result['name']], there
    sftp['sh']('rm -rf /srv/stalled')
