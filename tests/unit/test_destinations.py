"""_destinations: validation, the rclone invocations (secrets in the environment only), URLs, names, retention rules.

Behaviour against real servers is in tests/integration/test_destinations.py; here only argv and pure logic. The
SFTP password is obscured by the real rclone (the package the tests install).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _destinations
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

RCLONE = str(Path(sys.executable).parent / 'rclone')
S3 = dict(name='offsite', kind='s3', endpoint='https://s3.example.com', bucket='backups', prefix='/exment/', region='eu-1',
          access_key_id='AKIDEXAMPLE', secret_access_key='s3cr3t-value', storage_class='STANDARD_IA',
          server_side_encryption='AES256', chunk_size='64M', options={'no_check_bucket': True})


@pytest.mark.parametrize('dest, message', [
    (dict(name='h', kind='host'), 'destination h: kind host (another inventory host) is served by the roles'),
    (dict(name='b', kind='s3'), 'destination b (s3) needs bucket'),
    (dict(name='b', kind='s3', bucket='Bad_Bucket'), "bucket 'Bad_Bucket' is not a valid bucket name"),
    (dict(name='s', kind='sftp'), 'destination s (sftp) needs host'),
    (dict(name='r', kind='rclone'), 'destination r (rclone) needs remote'),
    (dict(name='r', kind='rclone', remote='-x'), "remote '-x' is not an rclone remote name"),
    (dict(name='p', kind='s3', bucket='bkt', prefix='a/../../etc'), "prefix 'a/../../etc' must not contain"),
    (dict(name='p', kind='sftp', host='h', path='-oProxyCommand'), 'must not start with "-"'),
    (dict(name='e', kind='s3', bucket='bkt', env={'AWS_X': '1'}), 'env may only set RCLONE_* variables'),
    (dict(name='o', kind='s3', bucket='bkt', options={'Bad-Key': 1}), "option 'Bad-Key' is not an rclone backend option name"),
    (dict(name='k', kind='s3', bucket='bkt', keep_last=-1), 'keep_last must be 0 or more'),
    (dict(name='bad name', kind='s3', bucket='bkt'), 'needs a name of letters'),
])
def test_bad_destinations_are_named(dest, message):
    with pytest.raises(AppvaultError) as err:
        _destinations.check(dest)
    assert message in err.value.msg


def test_s3_secrets_go_to_the_environment_never_argv():
    with _destinations.Remote(S3, rclone_path=RCLONE) as remote:
        argv = remote.argv('copyto', '/tmp/a', remote.target('a'))
        env = dict(remote.env)
        config = remote.config
        assert os.stat(os.path.dirname(config)).st_mode & 0o777 == 0o700
        assert open(config).read() == ''
    assert not os.path.exists(config), 'the private directory is removed'
    assert 's3cr3t-value' not in ' '.join(argv) and 'AKIDEXAMPLE' not in ' '.join(argv)
    assert argv[-1] == 'appvault:backups/exment/a'
    assert env['RCLONE_CONFIG_APPVAULT_TYPE'] == 's3'
    assert env['RCLONE_CONFIG_APPVAULT_SECRET_ACCESS_KEY'] == 's3cr3t-value'
    assert env['RCLONE_CONFIG_APPVAULT_STORAGE_CLASS'] == 'STANDARD_IA'
    assert env['RCLONE_CONFIG_APPVAULT_SERVER_SIDE_ENCRYPTION'] == 'AES256'
    assert env['RCLONE_CONFIG_APPVAULT_CHUNK_SIZE'] == '64M'
    assert env['RCLONE_CONFIG_APPVAULT_NO_CHECK_BUCKET'] == 'True'
    assert 'RCLONE_CONFIG_APPVAULT_ENV_AUTH' not in env
    with _destinations.Remote(dict(S3, access_key_id=None, secret_access_key=None), rclone_path=RCLONE) as remote:
        assert remote.env['RCLONE_CONFIG_APPVAULT_ENV_AUTH'] == 'true'


def test_sftp_password_is_obscured_and_key_text_written_0600():
    dest = dict(name='nas', kind='sftp', host='nas.example.com', user='bk', password='pw-plain-1', key_pem='-----BEGIN KEY-----\nabc\n',
                path='/srv/backups', prefix='exment')
    with _destinations.Remote(dest, rclone_path=RCLONE) as remote:
        obscured = remote.env['RCLONE_CONFIG_APPVAULT_PASS']
        key_file = remote.env['RCLONE_CONFIG_APPVAULT_KEY_FILE']
        assert obscured and obscured != 'pw-plain-1'
        assert os.stat(key_file).st_mode & 0o777 == 0o600 and open(key_file).read().endswith('abc\n')
        assert not os.path.exists(os.path.join(os.path.dirname(key_file), 'secret')), 'the password file is gone'
        assert remote.target('x.tar.zst') == 'appvault:/srv/backups/exment/x.tar.zst'
        assert remote.url('x.tar.zst') == 'sftp://bk@nas.example.com:22/srv/backups/exment/x.tar.zst'
        assert 'pw-plain-1' not in ' '.join(remote.argv('lsjson', remote.base()))


def test_rclone_remote_uses_given_config_text_and_its_own_name(tmp_path):
    dest = dict(name='gcs', kind='rclone', remote='mygcs', path='bucket/app', config_content='[mygcs]\ntype = local\n',
                env={'RCLONE_CONFIG_MYGCS_TOKEN': 'tok'}, bwlimit='10M')
    with _destinations.Remote(dest, rclone_path=RCLONE) as remote:
        argv = remote.argv('copyto', *(remote.transfer_flags() + ['/a', remote.target('a')]))
        assert argv[argv.index('--config') + 1] == remote.config and open(remote.config).read().startswith('[mygcs]')
        assert argv[-1] == 'mygcs:bucket/app/a' and argv[argv.index('--bwlimit') + 1] == '10M'
        assert remote.env == {'RCLONE_CONFIG_MYGCS_TOKEN': 'tok'}
        assert remote.url('a') == 'rclone:mygcs:bucket/app/a'
    with pytest.raises(AppvaultError, match='rclone config /nonexistent does not exist'):
        with _destinations.Remote(dict(dest, config_content=None, config='/nonexistent'), rclone_path=RCLONE):
            pass


def test_urls_carry_no_credentials():
    with _destinations.Remote(S3, rclone_path=RCLONE) as remote:
        assert remote.url('a.tar.zst') == 's3://backups/exment/a.tar.zst at https://s3.example.com'


def test_retention_rules_shared_with_the_catalogue():
    assert _catalog.retention_rules() == dict(keep_last=7, keep_daily=None, keep_weekly=None, keep_monthly=None, keep_yearly=None)
    with pytest.raises(AppvaultError, match='keep_daily must be 0 or more'):
        _catalog.retention_rules(keep_daily=-2)


def test_rclone_errors_are_passed_on_with_the_secrets_masked():
    from ansible_collections.appvault.backup.plugins.module_utils import _runner
    dest = dict(S3, env={'RCLONE_CONFIG_APPVAULT_SSE_CUSTOMER_KEY': 'customer-key-1'})
    with _destinations.Remote(dest, rclone_path=RCLONE) as remote:
        error = remote._error(_runner.CommandError('rclone failed: SignatureDoesNotMatch for s3cr3t-value, customer-key-1 '
                                                   'at https://s3.example.com', [dict(cmd='rclone', rc=1, stderr='')]))
    assert error.msg == ('destination offsite: rclone failed: SignatureDoesNotMatch for ********, ******** at https://s3.example.com')
    assert error.rc == 1
