import pytest

from spikeweave.errors import ConfigError
from spikeweave.training import TrainConfig, load_config
from spikeweave.training.assembly import check_config


def test_defaults_are_valid_and_round_trip_through_a_dict():
    cfg = TrainConfig().validate()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_toml_file_overrides_fields(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('dataset = "digits"\nsteps = 6\nlr = 1\n[notes]\nnote = "x"\n')
    cfg = TrainConfig.from_dict(load_config(path))
    assert (cfg.dataset, cfg.steps, cfg.lr, cfg.notes) == ("digits", 6, 1.0, {"note": "x"})


def test_unknown_keys_in_a_config_file_are_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epocs = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key\(s\) 'epocs'; valid keys are"):
        load_config(path)


def test_missing_and_malformed_config_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("steps = = 4\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (dict(dataset="imagenet"), "unknown dataset 'imagenet'"),
        (dict(model="resnet"), "unknown model 'resnet'"),
        (dict(neuron="hh"), "unknown neuron 'hh'"),
        (dict(method="magic"), "unknown training method 'magic'"),
        (dict(steps=0), "steps must be a positive integer"),
        (dict(lr=-1.0), "lr must be a positive number"),
        (dict(gamma=1.5), "gamma"),
        (dict(dropout=1.0), "dropout must be below 1"),
        (dict(surrogate="tanh"), "unknown surrogate"),
    ],
)
def test_invalid_values_give_a_clear_error(values, match):
    # Values are TrainConfig.validate's; names are checked against the registries by the
    # assembly's check_config (which validates first).
    with pytest.raises(ConfigError, match=match):
        check_config(TrainConfig.from_dict(values))


def test_the_config_module_is_a_leaf_that_imports_no_registry():
    import ast

    import spikeweave.training.config as module

    tree = ast.parse(open(module.__file__).read())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level
    }
    assert imported == {"errors", "options"}
    TrainConfig(neuron="no-such-neuron", method="no-such-method").validate()  # names: not here


def test_wrong_type_is_refused():
    with pytest.raises(ConfigError, match="steps must be an integer, got 'four'"):
        TrainConfig.from_dict({"steps": "four"})


def test_ann_models_simulate_a_single_step():
    cfg = TrainConfig(model="ann", steps=8)
    assert not cfg.spiking and cfg.effective_steps == 1 and cfg.architecture == "convnet"


def test_a_toml_date_or_non_finite_number_in_notes_is_refused_with_its_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[notes]\nrun = 3\nwhen = 1979-05-27T07:32:00Z\n")
    with pytest.raises(ConfigError, match="notes.when must be a string, number, true/false"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"notes.x\[0\] must be a finite number"):
        TrainConfig(notes={"x": [float("nan")]}).validate()
    cfg = TrainConfig(notes={"who": "me", "n": [1, 2.5, True], "t": {"a": "b"}}).validate()
    assert cfg.to_dict()["notes"]["t"] == {"a": "b"}


def test_toml_nested_too_deeply_for_the_parser_is_a_config_error(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("notes = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nests"):
        load_config(path)
