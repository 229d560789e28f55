# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Application profiles: the presets that fill appvault_app.paths and appvault_app.commands."""

from __future__ import annotations

PROFILES = {
    'generic': {'paths': [], 'commands': {}, 'owner': None},
}
