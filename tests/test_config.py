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


# ---- every config is validated the same way ---------------------------------------------------------

from urlvr.config import (EvalConfig, GainConfig, MCSConfig, Plan, PriorConfig,  # noqa: E402
                          apply_overrides, config_changes)


@pytest.mark.parametrize("cls, data, msg", [
    (MCSConfig, {"windw": 3}, "did you mean 'window'"),
    (MCSConfig, {"n": "eight"}, "n must be an integer"),
    (MCSConfig, {"n": 1}, "n must be >= 2"),
    (MCSConfig, {"until": "never"}, "until='never' is not one of"),
    (MCSConfig, {"lr": float("nan")}, "lr must be a finite number"),
    (GainConfig, {"passk": -1}, "passk must be >= 0"),
    (GainConfig, {"device": "gpu0"}, "not a device"),
    (PriorConfig, {"prior": "confused"}, "unknown prior"),
    (PriorConfig, {"size": "huge"}, "unknown model size"),
    (PriorConfig, {"p_correct": 1.5}, r"p_correct must be in \[0, 1\]"),
    (PriorConfig, {"task": "nope"}, "unknown task 'nope'"),
    (Plan, {"name": "x", "seeds": 0}, "seeds must be > 0"),
    (Plan, {"name": "x", "seeds": 1, "families": ["nonsense"]}, "unknown reward 'nonsense'"),
    (Plan, {"name": "x", "seeds": 1, "sizes": "32"}, "sizes must be a list"),
    (TrainConfig, {"dtype": "fp16"}, "float16 needs loss scaling"),
    (TrainConfig, {"dtype": "int3"}, "dtype='int3' is not one of"),
    (TrainConfig, {"lr": float("inf")}, "lr must be a finite number"),
    (TrainConfig, {"grader_workers": 0}, "grader_workers must be > 0"),
    (TrainConfig, {"task": "nope"}, "unknown task 'nope'"),
    (TrainConfig, {"reward": "pkg.missing:fn"}, "cannot load reward"),
])
def test_every_config_rejects_bad_input_with_one_line_naming_the_key(cls, data, msg):
    with pytest.raises(UrlvrError, match=msg) as e:
        cls.from_dict(data)
    assert "\n" not in str(e.value)


def test_eval_config_names_its_flags():
    with pytest.raises(UrlvrError, match=r"--max-new-tokens must be > 0"):
        EvalConfig(model="m", data=("arithmetic",), max_new_tokens=0)
    with pytest.raises(UrlvrError, match=r"--k \(4\) must be <= --n \(2\)"):
        EvalConfig(model="m", data=("arithmetic",), k=4, n=2)
    with pytest.raises(UrlvrError, match="--grader-timeout must be a finite number"):
        EvalConfig(model="m", data=("arithmetic",), grader_timeout=float("inf"))


def test_construction_converts_lossless_types_and_replace_validates():
    cfg = TrainConfig(lr=1, steps=3.0)
    assert isinstance(cfg.lr, float) and cfg.steps == 3 and isinstance(cfg.steps, int)
    assert Plan(name="x", seeds=1, sizes=[8, 16]).sizes == (8, 16)
    with pytest.raises(UrlvrError, match="n_train"):
        cfg.replace(n_train=99)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_config_changes_and_overrides():
    old = TrainConfig()
    new = TrainConfig.from_dict(apply_overrides(old.to_dict(), ["steps=80", "reward_options.empty=drop"]))
    assert config_changes(old, new) == ["reward_options: {} -> {'empty': 'drop'}", "steps: 60 -> 80"]
    assert config_changes(old, old) == []


def test_help_lists_every_key_with_its_documentation():
    text = TrainConfig.help()
    assert "  grader_timeout = 5.0    # Seconds one math-verify comparison may take" in text
    assert all(f"  {k} = " in text for k in TrainConfig().to_dict())
    assert "  window = 5" in MCSConfig.help()
