"""Launched twice by test_trl.py (``torch.distributed.run --nproc_per_node 2``): a split-group GRPOTrainer run.

With 2 processes, ``per_device_train_batch_size=2`` and ``num_generations=4``, each process holds half of
the one group of a step. ``record_group`` (a urlvr group reward) writes the size of every group it
scores; ``local_rows`` (a plain TRL reward function) writes how many rows its process holds.
Usage: python -m torch.distributed.run --nproc_per_node 2 _trl_two_processes.py MODEL OUT_DIR
"""

import json
import os
import sys
from pathlib import Path


def main(model: str, out: Path) -> None:
    from trl import GRPOConfig

    from urlvr.integrations.trl import URLVRGRPOTrainer, task_dataset, urlvr_reward_func
    from urlvr.rewards import register_reward
    from urlvr.tasks import get_task

    rank = int(os.environ["RANK"])

    def append(name: str, record: dict) -> None:
        with open(out / f"{name}.{rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    @register_reward("record_group", needs_group=True)
    def record_group(group):
        """Scores i / N by position in the group; records the group's size and problem."""
        append("groups", {"size": len(group), "problem": group.problem.id})
        return [i / len(group) for i in range(len(group))]

    def local_rows(prompts, completions, **kwargs):
        append("local", {"rows": len(prompts), "ids": kwargs["id"]})
        return [0.0] * len(prompts)

    task = get_task("arithmetic", digits=1, ops="+")
    args = GRPOConfig(output_dir=str(out / "trl"), max_steps=2, per_device_train_batch_size=2, num_generations=4,
                      max_completion_length=12, learning_rate=1e-3, report_to="none", use_cpu=True, logging_steps=1,
                      save_strategy="no", seed=0)
    trainer = URLVRGRPOTrainer(
        model=model, args=args, train_dataset=task_dataset(task, "train", 16),
        reward_funcs=[urlvr_reward_func("record_group", task),
                      urlvr_reward_func("token_entropy", task, log_diagnostics=False), local_rows])
    if trainer.accelerator.num_processes != 2:
        raise SystemExit(f"expected 2 processes, got {trainer.accelerator.num_processes}")
    trainer.train()
    if trainer.accelerator.is_main_process:
        (out / "log_history.json").write_text(json.dumps(trainer.state.log_history))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
