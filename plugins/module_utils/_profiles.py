# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Application profiles: the presets behind ``appvault_app.profile`` (generic | exment | nocobase).

Pure data, no logic. docs/profiles.md shows every value with its meaning and source; docs/exment.md and
docs/nocobase.md are the guides.

Shape of a profile::

    owner     user (and group) restored files get, and the account the commands run as; None = leave as recorded
    paths     list of appvault_app.paths items: id (safe name; the archive member files/<id>), path (relative to
              appvault_app.root), optional (a missing path is recorded as absent instead of failing), exclude (glob
              patterns; without '/' a name at any depth, with '/' a path relative to the item's path)
    commands  maintenance_on, maintenance_off, version, upgrade, restart; each None, one command string, or (only
              where one command cannot do the step, and documented there) a list of command strings run in order
    sources   where each value comes from: a URL or "seed 000/002 ..." per key 'owner', 'paths.<id>', 'commands.<key>'

Commands are split with shlex into an argv and run in appvault_app.root as the owner, without a shell: no pipes,
redirections, '&&', variables or globs. What the roles are expected to do with them:

    maintenance_on   before a restore, and during a backup when appvault_backup_quiesce is true
    maintenance_off  always afterwards (in ``always:``), also when the run failed
    version          before a backup (stdout goes into the manifest) and before a restore (compared with the manifest)
    upgrade          after a restore whose recorded version differs from the installed one (appvault_restore_upgrade:
                     auto), still in maintenance
    restart          after the restore (and the upgrade), before maintenance_off: make the running application pick
                     up the restored state; None when maintenance_off already does that

Paths never overlap (archive_create refuses sources inside one another), and a restore moves each path's current
copy aside to ``<path>-bak-<UTC stamp>`` before the restored one takes its place. That is why the presets list
the directories that hold state one by one instead of the whole storage directory: a path's excluded entries are
not carried over into the restored copy, so a whole-storage entry would move the PM2 home, caches, sockets and, in
NocoBase's docker-compose layout, the live database directory aside with it.

User values in appvault_app win over a preset: scalar keys and commands replace the preset's (an explicit null
switches a preset command off); paths are merged per id (a user item with a preset id replaces that item's keys,
other ids are added).
"""

# The Python 2 era boilerplate ansible-test's module_utils conventions ask for; harmless on Python 3.6+.
from __future__ import absolute_import, division, print_function  # noqa: UP010

__metaclass__ = type  # noqa: UP001

# Exment (exceedone/exment, Laravel). Sources pinned to the file versions that were read.
_EXMENT_SRC = 'https://github.com/exceedone/exment/blob/'
_EXMENT_MANUAL = 'https://github.com/exceedone/exment-manual/blob/'
EXMENT_BACKUP_TARGET = _EXMENT_SRC + '6505e805daf069ebd7662fd4455a2db57b886a77/src/Enums/BackupTarget.php'
EXMENT_BACKUP = _EXMENT_SRC + 'ba5ee3b7a4464ecde1eaa07b5474427bb89ba666/src/Services/BackupRestore/Backup.php'
EXMENT_RESTORE = _EXMENT_SRC + '9f1caf9a8744bb5f62d198943786d19aa0f0197b/src/Services/BackupRestore/Restore.php'
EXMENT_DISKS = _EXMENT_SRC + 'd4a007bed32d078c17753f99ad6fc5518ab5c815/src/Middleware/Initialize.php'
EXMENT_SYSTEM = _EXMENT_SRC + '026568229b01463cb442d7cf9a01e37758c2adb4/src/Model/System.php'
EXMENT_VERSION_CMD = _EXMENT_SRC + '39050061eca72c4475a5abd4ca7b86ca8cc4ac5e/src/Console/VersionCommand.php'
EXMENT_UPDATE_CMD = _EXMENT_SRC + '6a4f4b9461480ac936d440cf401bf9ce8e8344df/src/Console/UpdateCommand.php'
EXMENT_COMMANDS = _EXMENT_MANUAL + '052428d0a7f0ab6251a8165b1c213f1b2310d62b/docs/ja/command.md'
EXMENT_UBUNTU = _EXMENT_MANUAL + 'e2ddb4f47a8e0db92df5e0fdf326a706c6f43971/docs/ja/install_aws_ubuntu_single.md'
EXMENT_SAVEPLACE = _EXMENT_MANUAL + '02ebb781b28538ff77323efbafbb70770e4c6b34/docs/ja/additional_file_saveplace.md'
EXMENT_TROUBLE = _EXMENT_MANUAL + '00d17f4a2fdf8182b39d0f4d514d829385e654cd/docs/ja/troubleshooting.md'
LARAVEL_NONINTERACTIVE = 'https://cloud.laravel.com/docs/knowledge-base/command-failed-prod-app'

# NocoBase (nocobase/nocobase, Node.js; `yarn nocobase` is @nocobase/cli).
_NOCOBASE_SRC = 'https://github.com/nocobase/nocobase/blob/'
_NOCOBASE_DOCS = 'https://github.com/nocobase/docs/blob/'
NOCOBASE_BACKUP_DOC = _NOCOBASE_DOCS + '3955b32587adda9b51417cfdf5b7ef7699aa9861/docs/en-US/welcome/getting-started/backup-restore.md'
NOCOBASE_DEPLOY = _NOCOBASE_DOCS + '0b092015d1fdb2aa6de3228819efecd889dfec32/docs/en-US/welcome/getting-started/deployment/create-nocobase-app.md'
NOCOBASE_ENV = _NOCOBASE_DOCS + '0a3b7fcf8274e093fb47eb5ee26fb2905dce1d7c/docs/en-US/welcome/getting-started/env.md'
NOCOBASE_UPGRADE_DOC = _NOCOBASE_SRC + '00f8609287a3624247089c70bfa3857d5ab73db7/docs/docs/en/get-started/upgrading/create-nocobase-app.md'
NOCOBASE_CLI_UTIL = _NOCOBASE_SRC + '7a408fae3b2ef4381a62757b702d91f68a7d6ec2/packages/core/cli/src/util.js'
NOCOBASE_CLI = _NOCOBASE_SRC + '2c65ed574dcbd5d41feb50d3afe74f7ba35e3d98/packages/core/cli/src/cli.js'
NOCOBASE_CLI_PM2 = _NOCOBASE_SRC + '5fc86fcb80c88ea8aea615385ccf1de61eb8aa7a/packages/core/cli/src/commands/pm2.js'
NOCOBASE_CLI_UPGRADE = _NOCOBASE_SRC + 'f99e243269e4370a358f6c68b29de37617b516ab/packages/core/cli/src/commands/upgrade.js'
NOCOBASE_AES = _NOCOBASE_SRC + '8daf8b28e1f865a95497c04452c5ef3f0b42bb65/packages/core/server/src/aes-encryptor.ts'
YARN_SILENT = 'https://github.com/yarnpkg/yarn/issues/4383'

PROFILES = {
    'generic': {'paths': [], 'commands': {}, 'owner': None},

    'exment': {
        'owner': 'www-data',
        # Exment's own backup (exment:backup) copies exactly these: BackupTarget database / plugin / attachment / log /
        # config, where config is the config/ directory plus the EXMENT_*, APP_KEY, APP_LOCALE, APP_TIMEZONE lines of
        # .env. storage/app/backup (its own zips), admin_tmp, tmpupload, public_form_tmp, purifier, storage/framework,
        # bootstrap/cache, vendor and public are deliberately not listed.
        'paths': [
            {'id': 'attachments', 'path': 'storage/app/admin', 'optional': True, 'exclude': []},
            {'id': 'plugins', 'path': 'storage/app/plugins', 'optional': True, 'exclude': []},
            {'id': 'templates', 'path': 'storage/app/templates', 'optional': True, 'exclude': []},
            {'id': 'logs', 'path': 'storage/logs', 'optional': True, 'exclude': []},
            {'id': 'config_dir', 'path': 'config', 'optional': False, 'exclude': []},
            {'id': 'config', 'path': '.env', 'optional': False, 'exclude': []},
        ],
        'commands': {
            'maintenance_on': 'php artisan down',
            'maintenance_off': 'php artisan up',
            'version': 'php artisan exment:version',
            # A list on purpose: exment:update calls `migrate` without --force, which Laravel cancels in production when
            # nobody can answer its prompt; -n makes that deterministic and the second command runs the migrations.
            'upgrade': ['php artisan exment:update --no-interaction', 'php artisan migrate --force'],
            # Exment's own restore ends with System::clearCache() (Cache::flush()); PHP has no process to restart.
            'restart': 'php artisan cache:clear',
        },
        'sources': {
            'owner': EXMENT_UBUNTU + ' (chown -R www-data:www-data /var/www/exment; the CentOS guide uses apache)',
            'paths.attachments': EXMENT_BACKUP_TARGET + ' (attachment: storage/app/admin); ' + EXMENT_DISKS
            + ' (disk exment: storage_path(app/admin)); seed 000 §概要 (添付ファイル)',
            'paths.plugins': EXMENT_BACKUP_TARGET + ' (plugin: storage/app/plugins); seed 000 §概要 (プラグインファイル)',
            'paths.templates': EXMENT_DISKS + ' (disk template: storage_path(app/templates); not part of exment:backup); '
            + EXMENT_SAVEPLACE + ' (テンプレート)',
            'paths.logs': EXMENT_BACKUP_TARGET + ' (log: storage/logs); ' + EXMENT_TROUBLE
            + ' (storage/logs/laravel.log); seed 000 §概要 (ログファイル)',
            'paths.config_dir': EXMENT_BACKUP_TARGET + ' (config: base_path(config)); seed 000 §概要 (設定ファイル)',
            'paths.config': EXMENT_BACKUP + ' (getMatchedEnv: .env lines EXMENT_*, APP_KEY, APP_LOCALE, APP_TIMEZONE)',
            'commands.maintenance_on': EXMENT_RESTORE + " (execute: Artisan::call('down')); seed 000 §リストア時の注意",
            'commands.maintenance_off': EXMENT_RESTORE + " (finally: Artisan::call('up')); seed 000 §リストア時の注意",
            'commands.version': EXMENT_COMMANDS + ' (Exmentバージョン); ' + EXMENT_VERSION_CMD,
            'commands.upgrade': 'seed 000 §リストア時の注意 (php artisan exment:update); ' + EXMENT_UPDATE_CMD
            + " (initDatabase: call('migrate') without --force); " + LARAVEL_NONINTERACTIVE,
            'commands.restart': EXMENT_RESTORE + ' (System::clearCache()); ' + EXMENT_SYSTEM + ' (clearCache: Cache::flush())',
        },
    },

    'nocobase': {
        # The docs name no service account; set it to the user that runs NocoBase (it owns storage/.pm2).
        'owner': None,
        # Seed 002 backs up storage/uploads and storage/plugins (or all of storage). Not listed: storage/db (SQLite
        # file or the docker-compose database directory: databases are dumped), storage/.pm2 (PM2 home), storage/tmp,
        # storage/.app-dev, storage/playwright, storage/gateway.sock, storage/duplicator and backup-manager output,
        # node_modules and the code.
        'paths': [
            {'id': 'uploads', 'path': 'storage/uploads', 'optional': True, 'exclude': []},
            {'id': 'plugins', 'path': 'storage/plugins', 'optional': True, 'exclude': []},
            {'id': 'apps', 'path': 'storage/apps', 'optional': True, 'exclude': []},
            {'id': 'environment-variables', 'path': 'storage/environment-variables', 'optional': True, 'exclude': []},
            {'id': 'logs', 'path': 'storage/logs', 'optional': True, 'exclude': []},
            {'id': 'nginx_conf', 'path': 'storage/nocobase.conf', 'optional': True, 'exclude': []},
            {'id': 'config', 'path': '.env', 'optional': False, 'exclude': []},
        ],
        'commands': {
            # NocoBase has no maintenance-mode command: the app is stopped (PM2 home is storage/.pm2, so "all" is
            # this application only) and started again with pm2-restart, which also starts stopped processes.
            'maintenance_on': 'yarn nocobase pm2-stop',
            'maintenance_off': 'yarn nocobase pm2-restart',
            # --silent keeps yarn's own header lines out of stdout, which goes into the manifest.
            'version': 'yarn --silent nocobase --version',
            # --skip-code-update: migrate the database for the code that is installed; without it the CLI may first
            # fetch a newer @nocobase/cli, which a restore must not do behind the user's back.
            'upgrade': 'yarn nocobase upgrade --skip-code-update',
            'restart': None,
        },
        'sources': {
            'owner': 'not documented: ' + NOCOBASE_DEPLOY + ' runs everything as the installing user',
            'paths.uploads': 'seed 002 §どのデータをバックアップすべきか (./storage/uploads); '
            + NOCOBASE_CLI_UTIL + ' (LOCAL_STORAGE_DEST: storage/uploads)',
            'paths.plugins': 'seed 002 §どのデータをバックアップすべきか (./storage/plugins); '
            + NOCOBASE_CLI_UTIL + ' (PLUGIN_STORAGE_PATH: storage/plugins)',
            'paths.apps': NOCOBASE_AES + ' (AES key storage/apps/<app>/aes_key.dat, regenerated if missing)',
            'paths.environment-variables': NOCOBASE_AES + ' (older key location storage/environment-variables/<app>/aes_key.dat)',
            'paths.logs': NOCOBASE_ENV + ' (LOGGER_BASE_PATH default storage/logs); ' + NOCOBASE_CLI_UTIL,
            'paths.nginx_conf': NOCOBASE_DEPLOY + ' (create-nginx-conf writes ./storage/nocobase.conf)',
            'paths.config': NOCOBASE_ENV + ' (.env in the project root for Git and create-nocobase-app installs)',
            'commands.maintenance_on': NOCOBASE_UPGRADE_DOC + ' (stop before upgrading: yarn nocobase pm2-stop); '
            + NOCOBASE_CLI_PM2 + ' (pm2 stop all); ' + NOCOBASE_CLI_UTIL + ' (PM2_HOME storage/.pm2)',
            'commands.maintenance_off': NOCOBASE_DEPLOY + ' (restart: yarn nocobase pm2-restart); '
            + NOCOBASE_CLI_PM2 + ' (pm2 restart all); seed 002 §4 (yarn start)',
            'commands.version': NOCOBASE_CLI + ' (cli.version(@nocobase/cli version)); ' + YARN_SILENT,
            'commands.upgrade': 'seed 002 §4 (yarn nocobase upgrade); ' + NOCOBASE_UPGRADE_DOC
            + ' (yarn nocobase upgrade --skip-code-update); ' + NOCOBASE_CLI_UPGRADE,
            'commands.restart': 'seed 002 §4 (start after the upgrade): done by maintenance_off; ' + NOCOBASE_DEPLOY,
        },
    },
}
