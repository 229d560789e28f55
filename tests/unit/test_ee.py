"""meta/execution-environment.yml and its files: one definition read by ansible-builder both as this collection's
dependency declaration (introspection, paths relative to the collection root) and, through the link at the root,
as the definition of the AWX image."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from bindep.depends import Depends

REPO = Path(__file__).resolve().parents[2]
DEFINITION = REPO / 'meta' / 'execution-environment.yml'
EE = yaml.safe_load(DEFINITION.read_text())
BINDEP = Depends((REPO / 'meta' / 'ee-bindep.txt').read_text())

# The profiles bindep itself detects on these platforms (bindep.depends.Depends.platform_profiles), plus "default".
PLATFORMS = {
    'debian': ['platform:dpkg', 'platform:debian', 'platform:debian-bookworm'],
    'centos': ['platform:rpm', 'platform:redhat', 'platform:centos', 'platform:centos-9'],
    'rhel': ['platform:rpm', 'platform:redhat', 'platform:rhel', 'platform:rhel-9'],
    'fedora': ['platform:rpm', 'platform:redhat', 'platform:fedora', 'platform:fedora-41'],
}
COMMON = ['tar', 'gzip', 'zstd', 'rsync']
EXPECTED = {
    'debian': COMMON + ['openssh-client', 'postgresql-client', 'mariadb-client', 'age'],
    'centos': COMMON + ['openssh-clients', 'postgresql', 'mariadb'],
    'rhel': COMMON + ['openssh-clients', 'postgresql', 'mariadb'],
    'fedora': COMMON + ['openssh-clients', 'postgresql', 'mariadb', 'age'],
}


def pins():
    lines = (REPO / 'requirements.txt').read_text().splitlines()
    return dict(line.lower().split('==') for line in lines if '==' in line)


def test_schema_version_3_and_the_tested_versions():
    assert EE['version'] == 3
    assert EE['dependencies']['ansible_core']['package_pip'] == 'ansible-core==' + pins()['ansible-core']
    assert EE['dependencies']['ansible_runner']['package_pip'] == 'ansible-runner==' + pins()['ansible-runner']


def test_paths_resolve_against_the_collection_root_for_both_readers():
    link = REPO / 'execution-environment.yml'
    assert link.is_symlink() and os.readlink(link) == 'meta/execution-environment.yml'
    for key in ('python', 'system'):
        path = EE['dependencies'][key]
        assert not os.path.isabs(path) and (REPO / path).is_file(), path


def test_the_collection_tarball_is_where_the_galaxy_requirement_looks():
    (source,) = EE['additional_build_files']
    (collection,) = EE['dependencies']['galaxy']['collections']
    assert collection['type'] == 'file'
    # ansible-builder copies src into _build/<dest>/, and the image's galaxy stage runs in a copy of _build at /build.
    assert collection['name'] == '/build/%s/%s' % (source['dest'], os.path.basename(source['src']))
    makefile = (REPO / 'Makefile').read_text()
    assert 'EE_DIR := $(CURDIR)/%s' % os.path.dirname(source['src']) in makefile
    assert 'mv $(EE_DIR)/appvault-backup-*.tar.gz $(EE_DIR)/%s' % os.path.basename(source['src']) in makefile
    assert EE['dependencies']['exclude']['all_from_collections'] == ['appvault.backup']


def test_no_python_packages_beyond_ansible_core():
    """The collection's controller-side plugins and its modules import only the standard library and ansible."""
    lines = [line for line in (REPO / 'meta' / 'ee-requirements.txt').read_text().splitlines() if line.strip() and not line.startswith('#')]
    assert lines == []
    imported = set()
    for path in (REPO / 'plugins').rglob('*.py'):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ('import', 'from') and not line.startswith(' '):
                imported.add(words[1].split('.')[0])
    assert imported - set(sys.stdlib_module_names) <= {'ansible', 'ansible_collections', '__future__'}, imported


@pytest.mark.parametrize('platform', sorted(PLATFORMS))
def test_bindep_packages_per_platform(platform):
    rules = BINDEP.active_rules(['default'] + PLATFORMS[platform])
    assert [rule[0] for rule in rules] == EXPECTED[platform]


def test_age_from_epel_on_centos_and_rhel():
    """ansible-builder's assemble runs bindep with the epel profile on CentOS bases: age is installed from there."""
    for platform in ('centos', 'rhel'):
        default = {rule[0] for rule in BINDEP.active_rules(['default'] + PLATFORMS[platform])}
        epel = {rule[0] for rule in BINDEP.active_rules(['epel'] + PLATFORMS[platform])}
        assert epel - default == {'age'}
