import json

import pytest

from xstilts.cli import main
from xstilts.errors import ConfigError
from xstilts.tasks import REGISTRY, get_task
from xstilts.tasks.xtreme import XTREME_TASKS

# Language counts as XTREME defines them (Hu et al. 2020, Table 1).
EXPECTED_COUNTS = {
    "xnli": 15, "pawsx": 7, "udpos": 33, "panx": 40, "xquad": 11,
    "mlqa": 7, "tydiqa": 9, "bucc2018": 4, "tatoeba": 36,
}  # fmt: skip


@pytest.mark.parametrize("name,count", sorted(EXPECTED_COUNTS.items()))
def test_xtreme_language_counts(name, count):
    task = get_task(name)
    assert len(task.languages) == count
    assert len(set(task.languages)) == count


def test_nine_targets_registered_in_order():
    assert list(XTREME_TASKS) == [n for n in REGISTRY.names("xtreme")]


def test_unknown_task_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="known tasks: .*udpos"):
        get_task("udpso")


def test_training_data_only_where_xtreme_has_it():
    assert not get_task("tatoeba").has_training_data
    assert not get_task("bucc2018").has_training_data
    assert get_task("udpos").splits["train"] == ("en",)


def test_tasks_command_json(capsys):
    assert main(["tasks", "--json", "--family", "xtreme"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(XTREME_TASKS)
    assert by_name["panx"]["kind"] == "tagging"
    assert len(by_name["tatoeba"]["splits"]["test"]) == 36


def test_unknown_command_exits_2(capsys):
    assert main(["no-such-command"]) == 2
