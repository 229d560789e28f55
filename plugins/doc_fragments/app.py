# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Mirrors _appdef.argument_spec(); tests/unit/test_appdef.py keeps the two in step.
    DOCUMENTATION = r'''
options:
  app:
    description:
      - The resolved environment definition, C(appvault_app | appvault.backup.app_definition). See docs/environment.md.
    type: dict
    required: true
    suboptions:
      name:
        description: The application's name.
        type: str
        required: true
      profile:
        description: The profile whose presets were merged in.
        type: str
        default: generic
      root:
        description: The application directory (absolute).
        type: str
        required: true
      owner:
        description: Owner of the application's files and the user its commands run as.
        type: str
      group:
        description: Group of the application's files.
        type: str
      version:
        description: The application's version, when known without running its C(version) command.
        type: str
      databases:
        description: The databases.
        type: list
        elements: dict
        default: []
        suboptions:
          id:
            description: Stable id; names the dump inside the archive.
            type: str
            required: true
          engine:
            description: The database engine.
            type: str
            required: true
            choices: [postgresql, mysql, mariadb, sqlite]
          module:
            description: The module family handling the engine.
            type: str
            required: true
            choices: [postgresql, mysql, sqlite]
          name:
            description: Database name (server engines).
            type: str
          path:
            description: Database file (SQLite).
            type: str
          schemas:
            description: Only these PostgreSQL schemas.
            type: list
            elements: str
          options:
            description: Extra options for the engine's dump and restore modules.
            type: dict
            default: {}
          login_host:
            description: Database host.
            type: str
          login_port:
            description: Database port.
            type: int
          login_user:
            description: Database user.
            type: str
          login_password:
            description: Database password.
            type: str
          login_unix_socket:
            description: Unix socket directory (PostgreSQL) or file (MySQL).
            type: str
      paths:
        description: Files and directories (absolute paths).
        type: list
        elements: dict
        default: []
        suboptions:
          id:
            description: Stable id; names the tree inside the archive.
            type: str
            required: true
          path:
            description: Absolute path.
            type: str
            required: true
          optional:
            description: Whether the path may be missing.
            type: bool
            default: false
          exclude:
            description: Glob patterns left out.
            type: list
            elements: str
            default: []
      commands:
        description: The application's commands as argument lists (or V(null)).
        type: dict
        default: {}
      engines:
        description: The module families in use.
        type: list
        elements: str
        default: []
'''
