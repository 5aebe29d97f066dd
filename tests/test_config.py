"""Config: defaults are valid, every problem is reported at once, dicts round-trip."""

from __future__ import annotations

import dataclasses

import pytest

from bertfit.config import DataConfig, ServeConfig, TrainConfig, check, from_dict, to_dict
from bertfit.errors import UsageError


def problems(**fields) -> list[str]:
    """The problems of a TrainConfig or DataConfig built from ``fields`` (whichever knows them)."""
    cls = DataConfig if set(fields) <= set(to_dict(DataConfig())) else TrainConfig
    return cls(**fields).problems()


def test_defaults_are_valid():
    assert DataConfig().problems() == []
    assert TrainConfig().problems() == []
    assert check(DataConfig(), TrainConfig()) is None


def test_every_problem_is_reported_together():
    with pytest.raises(UsageError) as info:
        check(DataConfig(test_fraction=0), TrainConfig(epochs=0, batch_size=-1, train_layers="x"))
    message = str(info.value)
    for flag in ("--test-fraction", "--epochs", "--batch-size", "--train-layers"):
        assert flag in message, (flag, message)
    assert message.count("; --") >= 3 and "\n" not in message
    assert info.value.exit_code == 2 and isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", ["head", "pooler", "all", "lora", "LoRA", " all ", "1", "3", "12", 3])
def test_train_layers_accepts(value):
    assert problems(train_layers=value) == []


@pytest.mark.parametrize("value", ["x", "0", "-1", "03", "", "3.5", 0])
def test_train_layers_rejects(value):
    (problem,) = problems(train_layers=value)
    assert problem.startswith("--train-layers must be one of head, pooler, all, lora or a positive number")
    assert repr(value) in problem


@pytest.mark.parametrize(
    "fields, flag",
    [
        ({"epochs": 0}, "--epochs"),
        ({"epochs": 2.5}, "--epochs"),
        ({"epochs": True}, "--epochs"),
        ({"batch_size": -1}, "--batch-size"),
        ({"eval_batch_size": 0}, "--eval-batch-size"),
        ({"max_length": 0}, "--max-length"),
        ({"lora_r": 0}, "--lora-r"),
        ({"lora_alpha": "16"}, "--lora-alpha"),
        ({"patience": -1}, "--patience"),
        ({"learning_rate": 0.0}, "--learning-rate"),
        ({"learning_rate": 2.0}, "--learning-rate"),
        ({"warmup_ratio": 1.0}, "--warmup-ratio"),
        ({"weight_decay": -0.1}, "--weight-decay"),
        ({"validation_fraction": 0}, "--validation-fraction"),
        ({"test_fraction": 1.0}, "--test-fraction"),
        ({"test_fraction": -0.1}, "--test-fraction"),
    ],
)
def test_each_invalid_field_is_named_by_its_flag(fields, flag):
    found = problems(**fields)
    assert found and found[0].startswith(flag), found


@pytest.mark.parametrize("fields", [{"max_length": None}, {"patience": 0}, {"learning_rate": 3e-5},
                                    {"warmup_ratio": 0.0}, {"weight_decay": 0.0}, {"max_length": 8}])
def test_edge_values_that_are_fine(fields):
    assert problems(**fields) == []


@pytest.mark.parametrize("validation, test, ok", [(0.45, 0.45, False), (0.5, 0.4, False), (0.6, 0.35, False),
                                                  (0.45, 0.44, True), (0.3, 0.3, True), (0.01, 0.01, True)])
def test_fractions_must_leave_ten_percent_for_training(validation, test, ok):
    found = DataConfig(validation_fraction=validation, test_fraction=test).problems()
    assert (found == []) is ok, found
    if not ok:
        assert "must leave at least 10% for training" in found[-1]


@pytest.mark.parametrize("config", [TrainConfig(learning_rate="3e-5"), TrainConfig(warmup_ratio=None),
                                    DataConfig(validation_fraction="0.1")])
def test_wrong_type_is_a_usage_error_not_a_crash(config):
    with pytest.raises(UsageError):
        check(config)


def test_from_dict_ignores_unknown_keys():
    config = from_dict(TrainConfig, {"epochs": 3, "train_layers": "head", "added_in_a_later_version": 1})
    assert config == TrainConfig(epochs=3, train_layers="head")


@pytest.mark.parametrize("config", [DataConfig(text_col="body", seed=3), TrainConfig(model="m", lora_r=4)])
def test_dict_round_trip(config):
    assert from_dict(type(config), to_dict(config)) == config


@pytest.mark.parametrize("cls, command", [(DataConfig, "train"), (TrainConfig, "train"), (ServeConfig, "serve")])
def test_every_setting_is_a_flag_with_its_help_and_default(cls, command, capsys):
    """A setting's help and default are written once, on its field; the CLI shows both."""
    from bertfit.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
        flag = "--" + f.name.replace("_", "-")
        assert flag in shown, flag
        help_start = " ".join(f.metadata["help"].split())[:30]
        assert help_start in shown, (flag, help_start)
    if cls is TrainConfig:
        assert "(default 16)" in shown and "(default on)" in shown  # batch size; bucketing


def test_serve_config_problems_are_reported_together():
    with pytest.raises(UsageError, match=r"--max-batch must be positive.*--max-wait-ms must be 0 or more"):
        check(ServeConfig(max_batch=0, max_wait_ms=-1))
    with pytest.raises(UsageError, match="--threads must be int"):
        check(ServeConfig(threads="2"))


@pytest.mark.parametrize("content, shown", [
    ('{"billing": "x", "tech": 2}', "'billing': \"x\""),
    ('{"billing": 1, "sales": Infinity}', "'sales': Infinity"),
    ('{"billing": NaN}', "'billing': NaN"),
    ('{"billing": 1e999}', "'billing': Infinity"),
    ('{"billing": true}', "'billing': true"),
    ('{"billing": 0}', "'billing': 0"),
    ('{"billing": -2}', "'billing': -2"),
    ('{"billing": null}', "'billing': null"),
    ('{"billing": [2]}', "'billing': [2]"),
    ('{"billing": ' + "9" * 400 + "}", "'billing': 999"),
])
def test_class_weights_must_be_finite_positive_numbers(tmp_path, content, shown):
    """Checked with the other flags (before data or model are read), naming the label and its value."""
    file = tmp_path / "cw.json"
    file.write_text(content)
    with pytest.raises(UsageError) as info:
        check(TrainConfig(class_weights=str(file), epochs=0))
    message = str(info.value)
    assert "--epochs" in message and "every weight must be a finite number above 0" in message, message
    assert shown in message and "\n" not in message


@pytest.mark.parametrize("content, fragment", [("[1, 2]", "one JSON object"), ("{", "not valid JSON"),
                                               (None, "no such file")])
def test_class_weights_files_that_are_not_a_mapping(tmp_path, content, fragment):
    file = tmp_path / "cw.json"
    if content is not None:
        file.write_text(content)
    (problem,) = problems(class_weights=str(file))
    assert problem.startswith("--class-weights") and fragment in problem


@pytest.mark.parametrize("spec", ["none", "balanced"])
def test_class_weights_words_and_good_files_are_fine(tmp_path, spec):
    file = tmp_path / "cw.json"
    file.write_text('{"billing": 2, "tech": 0.5, "sales": 1e300}')
    assert problems(class_weights=spec) == [] and problems(class_weights=str(file)) == []


@pytest.mark.parametrize("name", ["max_wait_ms", "read_timeout"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_serve_limits_must_be_finite(name, value):
    """An infinite wait would hold every request; an infinite read timeout would switch the slow-client guard off."""
    with pytest.raises(UsageError, match=f"--{name.replace('_', '-')} must be a finite number"):
        check(ServeConfig(**{name: value}))
