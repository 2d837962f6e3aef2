"""Every label-free reward as a plug-in (see :mod:`urlvr.rewards.base` for the interface)."""

from urlvr.rewards.base import (Completion, Group, LabeledGroup, RewardOutput, RewardSpec, call_reward, get_reward,
                                register_reward, reward_names)
from urlvr.rewards import controls, ensemble  # noqa: F401  (registers the built-in rewards)

__all__ = ["Completion", "Group", "LabeledGroup", "RewardOutput", "RewardSpec", "call_reward", "get_reward",
           "register_reward", "reward_names"]
