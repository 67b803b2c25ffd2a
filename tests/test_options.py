"""One source per option: the spec's Option list parses every task's options once, into one typed Options object."""
from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.tasks import MAX_SEED, Options, discover_tasks

TASKS = discover_tasks()


def test_options_are_typed_read_only_and_complete() -> None:
    options = TASKS["pose"].parse_options({"steps": "3", "guidance": 2})
    assert isinstance(options, Options) and options.steps == 3 and options["guidance"] == 2.0
    assert set(options) == {o.name for o in TASKS["pose"].options}
    with pytest.raises(AttributeError):
        options.steps = 4  # type: ignore[misc]
    assert options.replace(steps=4).steps == 4 and options.steps == 3


@pytest.mark.parametrize("text, value", [("False", False), ("false", False), ("0", False), ("off", False),
                                         ("True", True), ("yes", True), (True, True)])
def test_bool_options_read_text_as_a_person_means_it(text: object, value: bool) -> None:
    assert TASKS["motion"].parse_options({"demo_context_order": text}).demo_context_order is value


def test_a_bool_option_refuses_other_text() -> None:
    with pytest.raises(InputError, match="demo_context_order must be bool"):
        TASKS["motion"].parse_options({"demo_context_order": "maybe"})


@pytest.mark.parametrize("task", TASKS)
def test_every_task_refuses_unknown_options(task: str) -> None:
    with pytest.raises(InputError, match="Unknown option"):
        TASKS[task].parse_options({"no_such_option": 1})


@pytest.mark.parametrize("task", [name for name, spec in TASKS.items() if any(o.name == "seed" for o in spec.options)])
def test_seeds_have_a_stated_range(task: str) -> None:
    assert TASKS[task].parse_options({"seed": MAX_SEED}).seed == MAX_SEED
    for seed in (MAX_SEED + 1, 18446744073709551616, 10**400):
        with pytest.raises(InputError, match="seed must be at most"):
            TASKS[task].parse_options({"seed": seed})


def test_pose_ranges_come_from_the_spec_alone() -> None:
    with pytest.raises(InputError, match="size must be at most 768"):
        TASKS["pose"].parse_options({"size": 832})
    with pytest.raises(InputError, match="steps must be at most 100"):
        TASKS["pose"].parse_options({"steps": 101})
