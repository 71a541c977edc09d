import pytest

from medvlm.config import ConfigError, load_config
from medvlm.train.config import TrainConfig


def test_yaml_and_overrides_fill_the_dataclasses(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("recipe: align\noptim:\n  lr: 1e-3\n  batch_size: 4\n")
    cfg = load_config(TrainConfig, recipe, ["optim.lr=3e-4", "components.language=lora", "lora.target_modules=[q_proj]"])
    assert cfg.recipe == "align"
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.batch_size == 4
    assert cfg.components.language == "lora"
    assert cfg.lora.target_modules == ["q_proj"]


def test_unknown_key_names_the_file_and_the_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  learning_rate: 1e-3\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: optim: unknown key\(s\) \['learning_rate'\]"):
        load_config(TrainConfig, recipe)


def test_wrong_type_and_bad_choice_are_errors():
    with pytest.raises(ConfigError, match="optim.batch_size: expected a whole number"):
        load_config(TrainConfig, None, ["optim.batch_size=big"])
    with pytest.raises(ConfigError, match="components.vision: 'partly' is not one of"):
        load_config(TrainConfig, None, ["components.vision=partly"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(TrainConfig, None, ["optim.lr"])


def test_every_shipped_recipe_parses():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        cfg = load_config(TrainConfig, recipe)
        assert cfg.recipe in ("align", "finetune", "encoder"), recipe
