"""`urlvr rewards` lists every reward, advantage modifier and loss-side method with its family."""

import subprocess
import sys

from urlvr.advantages import get_advantage_modifier, modifier_names
from urlvr.loss import LOSS_SIDE_METHODS
from urlvr.rewards import get_reward, reward_names


def test_urlvr_rewards_lists_every_plug_in_with_its_family():
    out = subprocess.run([sys.executable, "-m", "urlvr", "rewards"], capture_output=True, text=True, check=True).stdout
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  ")}
    for name in reward_names():
        assert lines[name] == get_reward(name).family
    for name in modifier_names():
        assert lines[name] == get_advantage_modifier(name).family
    for name, (family, _) in LOSS_SIDE_METHODS.items():
        assert lines[name] == family
    assert "advantage modifiers" in out and "loss-side methods" in out
