import pytest

from urlvr.config import TrainConfig, config_from_dict, load_config
from urlvr.errors import UrlvrError


def test_defaults_are_valid():
    assert config_from_dict({}) == TrainConfig()


@pytest.mark.parametrize("data,msg", [
    ({"n_train": 16, "n_votes": 8}, r"n_train \(16\) > n_votes \(8\)"),
    ({"lr": -1e-5}, "lr must be > 0"),
    ({"task": ""}, "missing dataset"),
    ({"task": "jsonl"}, "task_options.path"),
    ({"stepz": 1}, "did you mean 'steps'"),
    ({"advantage": "ppo"}, "advantage='ppo' is not one of"),
    ({"steps": "many"}, "steps must be an integer"),
    ({"top_p": 1.5}, "top_p"),
    ({"prompts_per_step": 3, "n_train": 3, "n_votes": 3, "updates_per_step": 2}, "not divisible"),
    ({"task_options": 3}, "must be a mapping"),
])
def test_bad_configs(data, msg):
    with pytest.raises(UrlvrError, match=msg):
        config_from_dict(data)


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("reward: gold\nlr: 1.0e-4\ntask_options:\n  digits: 2\n")
    cfg = load_config(p, ["lr=3e-4", "task_options.ops=+", "steps=7"])
    assert (cfg.reward, cfg.lr, cfg.steps, cfg.task_options) == ("gold", 3e-4, 7, {"digits": 2, "ops": "+"})


def test_bad_yaml_and_overrides(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("reward: [gold\n")
    with pytest.raises(UrlvrError, match="malformed YAML"):
        load_config(p)
    with pytest.raises(UrlvrError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(UrlvrError, match="key=value"):
        load_config(None, ["lr"])


def test_every_recipe_loads():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
    assert recipes
    for r in recipes:
        load_config(r)
