# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  destination:
    description:
      - An off-host destination reached through rclone on the managed host (docs/destinations.md). Required by
        M(appvault.backup.backup_upload) and M(appvault.backup.backup_download).
      - Secrets (O(destination.secret_access_key), O(destination.password), O(destination.key_pem),
        O(destination.config_content), O(destination.env)) go to rclone through environment variables or 0600 files in
        a private temporary directory, never on its command line, and are never returned.
    type: dict
    required: false
    suboptions:
      name:
        description: The destination's name, used in results, C(list.yml) and C(appvault_restore_from).
        type: str
        required: true
      kind:
        description:
          - V(s3) any S3-compatible endpoint, V(sftp) an SSH server, V(rclone) any remote configured in rclone.
          - V(host) (another inventory host) is served by the roles and the C(list)/C(prune) playbooks through the
            migrate role's transfer; the modules refuse it.
        type: str
        required: true
        choices: [s3, sftp, rclone, host]
      endpoint:
        description: S3 endpoint URL (empty for AWS itself).
        type: str
      bucket:
        description: S3 bucket (required for V(s3)).
        type: str
      prefix:
        description: Folder inside the bucket (V(s3)) or below O(destination.path) (V(sftp), V(rclone)).
        type: str
        default: ''
      region:
        description: S3 region.
        type: str
      provider:
        description: rclone's S3 provider name (V(AWS), V(Minio), V(Ceph), V(Wasabi), V(Other), ...).
        type: str
        default: Other
      access_key_id:
        description: S3 access key id. Without it rclone takes the credentials from the environment (C(AWS_*)) or the instance role.
        type: str
      secret_access_key:
        description: S3 secret access key.
        type: str
      session_token:
        description: S3 session token for temporary credentials.
        type: str
      storage_class:
        description: S3 storage class of the uploaded objects (V(STANDARD_IA), V(GLACIER_IR), ...).
        type: str
      server_side_encryption:
        description: S3 server-side encryption (V(AES256) or V(aws:kms)).
        type: str
      sse_kms_key_id:
        description: KMS key ARN for O(destination.server_side_encryption=aws:kms).
        type: str
      upload_cutoff:
        description: Size from which an S3 upload is multipart (rclone's default 200Mi).
        type: str
      chunk_size:
        description: Part size of a multipart S3 upload (rclone's default 5Mi; bigger parts for big archives).
        type: str
      host:
        description: SFTP server (required for V(sftp)).
        type: str
      port:
        description: SFTP port.
        type: int
        default: 22
      user:
        description: SFTP login.
        type: str
      password:
        description: SFTP password (passed to rclone obscured, through its environment).
        type: str
      key_file:
        description: Private key file on the managed host for SFTP.
        type: path
      key_pem:
        description: Private key text for SFTP (written 0600 into a private temporary directory).
        type: str
      known_hosts_file:
        description: known_hosts file to check the SFTP server's host key against (recommended; without it the key is not checked).
        type: path
      path:
        description: Folder on the SFTP server (absolute, or relative to the login's home) or inside the rclone remote.
        type: str
        default: ''
      remote:
        description: Name of a configured rclone remote (required for V(rclone)).
        type: str
      config:
        description: rclone configuration file on the managed host for V(rclone) (rclone's default file otherwise).
        type: path
      config_content:
        description: rclone configuration text for V(rclone), written 0600 into a private temporary directory.
        type: str
      options:
        description:
          - More rclone backend options for V(s3) and V(sftp), by their config names (for example V(no_check_bucket)).
            Not for secrets; use O(destination.env).
        type: dict
        default: {}
      env:
        description: C(RCLONE_*) environment variables for rclone (for example C(RCLONE_CONFIG_<REMOTE>_<KEY>) secrets of a V(rclone) remote).
        type: dict
        default: {}
      bwlimit:
        description: rclone bandwidth limit (for example V(10M)).
        type: str
      retries:
        description: How often a failed or unverified upload is retried before it is removed and reported.
        type: int
        default: 2
      verify:
        description:
          - How an upload's content is checked at the destination. V(auto) uses the best hash it reports (sha256;
            otherwise md5 compared with the local file's, whose sha256 matched its checksum file) and reads the object
            back when it reports none. V(download) always reads it back and computes its sha256.
        type: str
        choices: [auto, download]
        default: auto
      keep_last:
        description: Retention at this destination (see M(appvault.backup.backup_prune)).
        type: int
      keep_daily:
        description: Retention at this destination.
        type: int
      keep_weekly:
        description: Retention at this destination.
        type: int
      keep_monthly:
        description: Retention at this destination.
        type: int
      keep_yearly:
        description: Retention at this destination.
        type: int
  rclone_path:
    description: The rclone program on the managed host (found on E(PATH) when not given).
    type: path
'''
