"""playbooks/awx_setup.yml: its surveys are valid AWX surveys, and every question agrees with what it feeds.

Each survey variable must exist in the argument spec of the role its job template runs (or be read by the
playbook), and every answer the question can give - as AWX passes it: integers as numbers, every other answer as a
string - must pass that argument spec and, for the default, convert to the role's default. The validator is the
one ansible-core runs for role argument specs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / 'playbooks' / 'awx_setup.yml'
SETTINGS = REPO / 'playbooks' / 'vars' / 'awx_setup.yml'
PROJECT = REPO / 'extensions' / 'awx' / 'project'
# What AWX's survey validation allows (awx/api/views: JobTemplateSurveySpec).
AWX_TYPES = {'text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect'}
# Survey type -> the argument spec types it can feed.
FEEDS = {'integer': {'int'}, 'float': {'float'}, 'text': {'str', 'path'}, 'textarea': {'str', 'path'}, 'password': {'str'},
         'multiplechoice': {'str', 'bool'}, 'multiselect': {'list'}}
# The backup names the restore survey offers when awx_setup.yml read a catalogue.
SAMPLE_BACKUPS = ['shop-20260103T030000Z.tar.zst', 'shop-20260101T030000Z.tar.zst']


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor('!unsafe', lambda loader, node: loader.construct_scalar(node))


def load(path):
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 - a SafeLoader that also reads !unsafe


SETTINGS_DATA = load(SETTINGS)
SURVEYS = SETTINGS_DATA['appvault_awx_surveys']


def role_options(role):
    return load(REPO / 'roles' / role / 'meta' / 'argument_specs.yml')['argument_specs']['main']['options']


def list_playbook_options():
    """The list playbook has no role: its variables, with the type and default it reads them with."""
    text = (REPO / 'playbooks' / 'list.yml').read_text()
    found = re.search(r'appvault_list_verify \| default\((\w+)\) \| bool', text)
    assert found, 'playbooks/list.yml no longer reads appvault_list_verify | default(...) | bool'
    return {'appvault_list_verify': {'type': 'bool', 'default': found.group(1) == 'true'}}


def migrate_options():
    return role_options('migrate')


OPTIONS = {'backup': lambda: role_options('backup'), 'restore': lambda: role_options('restore'),
           'list': list_playbook_options, 'migrate': migrate_options}


def questions():
    for template, survey in SURVEYS.items():
        for question in survey['spec']:
            yield pytest.param(template, question, id='%s-%s' % (template, question['variable']))


def choices_of(question):
    choices = question['choices']
    if isinstance(choices, str) and '{{' in choices:
        # The restore survey's choices are rendered by Ansible: "latest" plus the names read from the hosts.
        assert choices == '{{ appvault_awx_restore_choices }}'
        assert SETTINGS_DATA['appvault_awx_restore_choices'].startswith("{{ ['latest'] + ")
        return ['latest'] + SAMPLE_BACKUPS
    return choices.split('\n') if isinstance(choices, str) else choices


def answers(question):
    """Every answer AWX can pass for the question, as it passes it."""
    kind = question['type']
    if kind == 'multiplechoice':
        return choices_of(question)
    if kind == 'integer':
        return sorted({question.get('min', 0), question.get('max', 0), question.get('default', 0)})
    if kind in ('text', 'textarea', 'password'):
        return [question.get('default', ''), 'before-upgrade']
    raise AssertionError('no answers for %s questions' % kind)


def validate(option, value):
    spec = {k: v for k, v in option.items() if k in ('type', 'choices', 'elements')}
    result = ArgumentSpecValidator({'x': spec}).validate({'x': value})
    return result.error_messages, result.validated_parameters.get('x')


@pytest.mark.parametrize('template', sorted(SURVEYS))
def test_survey_is_valid_for_awx(template):
    survey = SURVEYS[template]
    assert set(survey) == {'name', 'description', 'spec'} and survey['spec']
    variables = [q['variable'] for q in survey['spec']]
    assert len(variables) == len(set(variables)), 'a variable is asked twice'
    for question in survey['spec']:
        assert question['type'] in AWX_TYPES, question
        assert question['question_name'] and isinstance(question['required'], bool), question
        if question['type'] == 'multiplechoice':
            choices = choices_of(question)
            assert all(isinstance(c, str) for c in choices) and len(choices) == len(set(choices)), question
            assert 'default' not in question or question['default'] in choices, question
        if question['type'] == 'integer' and 'default' in question:
            assert isinstance(question['default'], int) and question['min'] <= question['default'] <= question['max'], question
        if question['type'] == 'text' and 'default' in question:
            assert isinstance(question['default'], str) and question['min'] <= len(question['default']) <= question['max'], question


@pytest.mark.parametrize(('template', 'question'), list(questions()))
def test_survey_question_agrees_with_the_argument_spec(template, question):
    options = OPTIONS[template]()
    variable = question['variable']
    assert variable in options, '%s survey asks for %s, which %s does not read' % (template, variable, template)
    option = options[variable]
    kind = option.get('type', 'str')
    assert kind in FEEDS[question['type']], '%s: a %s question cannot feed a %s' % (variable, question['type'], kind)
    if question['type'] == 'multiplechoice' and kind == 'bool':
        assert set(choices_of(question)) <= {'true', 'false'}, 'answer booleans with the strings true and false'
    if option.get('choices'):
        assert set(choices_of(question)) <= set(option['choices']), (choices_of(question), option['choices'])
    for answer in answers(question):
        errors, _value = validate(option, answer)
        assert not errors, '%s=%r: %s' % (variable, answer, errors)
    if 'default' in question:
        errors, value = validate(option, question['default'])
        assert not errors and value == option.get('default'), '%s: survey default %r is %r, the role defaults to %r' % (
            variable, question['default'], value, option.get('default'))


@pytest.mark.parametrize('template, variable', [('restore', 'appvault_restore_confirm'), ('migrate', 'appvault_migrate_confirm')])
def test_destructive_templates_need_an_explicit_confirmation(template, variable):
    confirm = next(q for q in SURVEYS[template]['spec'] if q['variable'] == variable)
    assert confirm['required'] and 'default' not in confirm, 'the confirmation must be answered, never pre-filled'
    assert choices_of(confirm) == ['false', 'true']


def test_bad_survey_input_is_refused_by_the_argument_spec():
    """What a text answer in the wrong place would meet: a clear message naming the type."""
    errors, _value = validate(role_options('backup')['appvault_backup_keep'], 'seven')
    assert errors and 'cannot be converted to an int' in errors[0], errors
    errors, _value = validate(role_options('restore')['appvault_restore_confirm'], 'yes please')
    assert errors and 'is not a valid boolean' in errors[0], errors
    errors, _value = validate(role_options('restore')['appvault_restore_upgrade'], 'sometimes')
    assert errors and 'must be one of: auto, always, never' in errors[0], errors


def test_job_templates_run_the_projects_playbooks():
    plays = load(SETUP)
    tasks = plays[1]['tasks']
    playbooks = SETTINGS_DATA['appvault_awx_playbooks']
    for template in ('backup', 'restore', 'list', 'migrate'):
        text = (PROJECT / playbooks[template]).read_text()
        assert 'ansible.builtin.import_playbook: appvault.backup.%s' % template in text
        assert (REPO / 'playbooks' / ('%s.yml' % template)).exists()
    loop = next(t for t in tasks if t['name'] == 'Job templates')
    assert loop['loop'] == '{{ appvault_awx_surveys | dict2items }}', 'every survey has its job template, migrate included'


def test_workflow_backs_up_then_verifies_with_the_list_template():
    tasks = load(SETUP)[1]['tasks']
    workflow = next(t for t in tasks if 'awx.awx.workflow_job_template' in t)['awx.awx.workflow_job_template']
    nodes = {n['identifier']: n for n in workflow['workflow_nodes']}
    assert nodes['backup']['unified_job_template']['name'] == '{{ appvault_awx_names.backup }}'
    assert nodes['backup']['related']['success_nodes'] == [{'identifier': 'verify'}]
    assert nodes['verify']['unified_job_template']['name'] == '{{ appvault_awx_names.list }}'
    # Node extra data is accepted for survey variables only: the list survey asks this one.
    assert set(nodes['verify']['extra_data']) <= {q['variable'] for q in SURVEYS['list']['spec']}
    assert nodes['verify']['extra_data']['appvault_list_verify'] == 'true'


def test_schedule_runs_at_three_every_other_day():
    rrule = SETTINGS_DATA['appvault_awx_rrule'].replace('{{ appvault_awx_timezone }}', 'Asia/Tokyo')
    match = re.fullmatch(r'DTSTART;TZID=([A-Za-z_/]+):(\d{8})T(\d{6}) RRULE:(.*)', rrule)
    assert match, rrule
    assert match.group(3) == '030000'
    assert dict(part.split('=') for part in match.group(4).split(';')) == {'FREQ': 'DAILY', 'INTERVAL': '2'}
    tasks = load(SETUP)[1]['tasks']
    schedule = next(t for t in tasks if 'awx.awx.schedule' in t)['awx.awx.schedule']
    assert schedule['unified_job_template'] == '{{ appvault_awx_names.workflow }}'
    assert schedule['rrule'] == '{{ appvault_awx_rrule }}'


def test_credential_type_injects_the_password_as_environment():
    tasks = load(SETUP)[1]['tasks']
    task = next(t for t in tasks if 'awx.awx.credential_type' in t)
    spec = task['awx.awx.credential_type']
    assert spec['kind'] == 'cloud'
    assert spec['inputs']['fields'] == [{'id': 'password', 'type': 'string', 'label': 'Database password', 'secret': True}]
    # AWX renders the injector: Ansible must pass "{{ password }}" through untemplated (!unsafe).
    assert task['vars']['appvault_awx_password_placeholder'] == '{{ password }}'
    assert '!unsafe "{{ password }}"' in SETUP.read_text()
    assert SETTINGS_DATA['appvault_awx_db_password_env'] == 'APPVAULT_DB_PASSWORD'
    credential = next(t for t in tasks if 'awx.awx.credential' in t)
    assert credential['no_log'] is True
    inventory = (PROJECT / 'inventory' / 'appvault.yml').read_text()
    assert "lookup('ansible.builtin.env', 'APPVAULT_DB_PASSWORD')" in inventory
