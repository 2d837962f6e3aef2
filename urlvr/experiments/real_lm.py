"""Experiment ``real_lm``: one finding on a real pretrained LM, SmolLM2-135M-Instruct, on the CPU.

Test-time training (METHODS.md §10) needs an unlabeled set on which the model's majority answer beats a
single sample (maj@k > avg@k): otherwise majority vote has nothing to sharpen. So:

1. **Search** (:data:`CANDIDATES`): evaluate the base model on candidate sets and prompt formats with the
   real evaluation harness (``urlvr eval``: avg@k, maj@k, pass@k, unparsable rate; one seed).
2. **Choose** (:func:`choose`, pure): the candidate with the largest maj@k − avg@k among those with
   avg@k ≥ :data:`MIN_AVG` (a set the model can do at all).
3. **Test-time training** on the chosen set's problems themselves, unlabeled (``urlvr ttt``: evaluation
   before and after the *final* step on the same problems, same settings, paired): majority vote, one
   certainty reward (self-certainty) and the gold control, each over the plan's seeds. Per arm: avg@k and
   maj@k before and after with the paired difference and its 95 % CI, label accuracy and token entropy
   over the run's last steps, and the wall time.

The finding states its limits: a 135M model, a few dozen steps, a set of tens of problems.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from urlvr.errors import UrlvrError
from urlvr.experiments.figures import plot_before_after
from urlvr.experiments.findings import Finding
from urlvr.experiments.runner import Job, Runner
from urlvr.experiments.verdicts import describe

__all__ = ["run", "CANDIDATES", "MIN_AVG", "choose", "chosen_setting", "candidate_settings", "TTT_REWARDS"]

FEW_SHOT_1 = "1+2=3\n5-3=2\n3*2=6\n{question}="
FEW_SHOT_ADD = "1+2=3\n5+3=8\n6+1=7\n{question}="
FEW_SHOT_2 = "12+35=47\n23+41=64\n50+26=76\n{question}="

CANDIDATES: dict[str, dict[str, Any]] = {
    "2-digit +, chat, number only": dict(
        task_options={"digits": 2, "ops": "+", "fallback": ["answer_is", "last_number"],
                      "template": "What is {question}?"},
        chat="auto", system_prompt="Answer with the number only.", max_new_tokens=32, problems=40),
    "1-digit +, chat, number only": dict(
        task_options={"digits": 1, "ops": "+", "fallback": ["answer_is", "last_number"],
                      "template": "What is {question}?"},
        chat="auto", system_prompt="Answer with the number only.", max_new_tokens=16, problems=12, whole_split=True),
    "2-digit +, 3-shot": dict(
        task_options={"digits": 2, "ops": "+", "fallback": ["first_number"], "template": FEW_SHOT_2},
        chat="off", system_prompt="", max_new_tokens=4, problems=40),
    "1-digit +, 3-shot": dict(
        task_options={"digits": 1, "ops": "+", "fallback": ["first_number"], "template": FEW_SHOT_ADD},
        chat="off", system_prompt="", max_new_tokens=3, problems=12, whole_split=True),
    "1-digit + - *, 3-shot": dict(
        task_options={"digits": 1, "ops": "+-*", "fallback": ["first_number"], "template": FEW_SHOT_1},
        chat="off", system_prompt="", max_new_tokens=3, problems=22, whole_split=True),
}
"""Candidate sets (the arithmetic task's test split) and prompt formats, searched in this order. ``whole_split``:
the set is the whole test split, so a training run with any seed draws the same problems as the evaluation
(``urlvr ttt`` checks this); on the others only seed 0 does, and the arms run once."""

MIN_AVG = 0.2
"""A candidate needs avg@k at least this to be chosen (a set the model can do at all)."""

TTT_REWARDS = ("majority_vote", "self_certainty", "gold")


def choose(search: dict[str, dict]) -> str | None:
    """The candidate with the largest ``maj@k − avg@k`` among those with ``avg@k ≥ MIN_AVG`` and a positive gap.

    >>> choose({"a": {"avg": 0.10, "maj": 0.40}, "b": {"avg": 0.4, "maj": 0.5}, "c": {"avg": 0.5, "maj": 0.5}})
    'b'
    >>> choose({"a": {"avg": 0.1, "maj": 0.3}}) is None
    True
    """
    ok = {name: r["maj"] - r["avg"] for name, r in search.items() if r["avg"] >= MIN_AVG and r["maj"] > r["avg"]}
    return max(ok, key=lambda name: (ok[name], -list(search).index(name))) if ok else None


def candidate_settings(p, c: dict) -> dict:
    """TrainConfig settings that render and sample candidate ``c`` (its test problems, prompt format, lengths):
    the same for the search, the certainty experiment's preferences and test-time training."""
    return {"model": p.real_lm, "task": "arithmetic", "task_options": dict(c["task_options"]), "chat": c["chat"],
            "system_prompt": c["system_prompt"], "max_new_tokens": c["max_new_tokens"], "train_split": "test",
            "train_problems": c["problems"], "val_temperature": 1.0}


def _eval_payload(p, c: dict, k: int, seeds: int) -> dict:
    """The harness's settings for candidate ``c``, exactly as ``urlvr ttt`` evaluates its training runs."""
    from urlvr.config import TrainConfig
    from urlvr.evaluation.ttt import eval_config

    cfg = TrainConfig.from_dict(candidate_settings(p, c))
    return eval_config(cfg, p.real_lm, "test", c["problems"], k, seeds).to_dict()


def _candidates(p) -> dict[str, dict]:
    names = list(p.real_lm_candidates) or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise UrlvrError(f"unknown real-LM candidate(s) {unknown}; choose from {', '.join(CANDIDATES)}")
    return {n: CANDIDATES[n] for n in names}


def _search(r: Runner, p) -> dict[str, dict]:
    """The base model on every candidate (evaluated once per reproduction: certainty and real_lm both ask)."""
    if "real_lm_search" in r.memo:
        return r.memo["real_lm_search"]
    cands = _candidates(p)
    jobs = [Job("eval", r.out / "real_lm" / f"search_{list(CANDIDATES).index(name)}", f"search {name}",
                _eval_payload(p, c, p.real_lm_k, 1)) for name, c in cands.items()]
    out = {}
    for name, res in zip(cands, r.execute(jobs)):
        m = res["benchmarks"][0]["metrics"]
        k = p.real_lm_k
        out[name] = {"avg": m[f"avg@{k}"]["mean"], "maj": m[f"maj@{k}"]["mean"], "pass": m[f"pass@{k}"]["mean"],
                     "unparsable": m["unparsable_rate"]["mean"], "truncated": m["truncation_rate"]["mean"],
                     "problems": res["benchmarks"][0]["data"]["problems"]}
    r.memo["real_lm_search"] = out
    return out


def chosen_setting(r: Runner, p) -> dict:
    """The chosen candidate (the search runs, or is reused, first); the first candidate if none qualifies."""
    search = _search(r, p)
    return CANDIDATES[choose(search) or next(iter(search))]


def run(r: Runner, seeds: list[int]) -> tuple[list[Finding], list[Path]]:
    p = r.plan
    if not p.real_lm:  # a plan without a real model (the tests' smoke plan)
        return [], []
    tseeds = seeds[: p.real_lm_seeds]
    r.bars.experiment("real LM", len(_candidates(p)) + len(TTT_REWARDS) * len(tseeds))
    search = _search(r, p)
    name = choose(search)
    search_table = [["candidate set and prompt", "problems", f"avg@{p.real_lm_k}", f"maj@{p.real_lm_k}",
                     f"maj − avg", f"pass@{p.real_lm_k}", "unparsable", "truncated"]]
    for cand, s in search.items():
        search_table.append([cand + (" **(chosen)**" if cand == name else ""), str(s["problems"]), f"{s['avg']:.3f}",
                             f"{s['maj']:.3f}", f"{s['maj'] - s['avg']:+.3f}", f"{s['pass']:.3f}",
                             f"{s['unparsable']:.3f}", f"{s['truncated']:.3f}"])
    if name is None:
        why = (f"No candidate set had avg@{p.real_lm_k} ≥ {MIN_AVG} with maj@{p.real_lm_k} above it, so no test-time "
               "training was run: majority vote would have nothing to sharpen.")
        return [Finding("real LM", CLAIM, _measured(p, tseeds, None), search_table, "not reproduced", why)], []
    c = CANDIDATES[name]
    k = p.real_lm_k
    if not c.get("whole_split"):
        tseeds = [0]
    jobs = []
    for reward in TTT_REWARDS:
        for seed in tseeds:
            settings = {**candidate_settings(p, c), "val_problems": 0, "reward": reward,
                        "prompts_per_step": min(8, c["problems"]), "n_votes": 8, "n_train": 8,
                        "steps": p.real_lm_steps, "lr": p.real_lm_lr, "save_every": p.real_lm_steps,
                        "sample_every": p.real_lm_steps, "seed": seed, "kl_every": 1}
            jobs.append(Job("ttt", r.out / "real_lm" / f"ttt_{reward}_s{seed}", f"ttt {reward} s{seed}",
                            {"settings": settings, "k": k, "seeds": p.real_lm_eval_seeds},
                            p.real_lm_steps))
    results = dict(zip(((j.payload["settings"]["reward"], j.payload["settings"]["seed"]) for j in jobs), r.execute(jobs)))
    ttt_table = [["reward", f"avg@{k} before → after (per run)", f"Δ avg@{k} [95% CI]", f"maj@{k} before → after",
                  f"Δ maj@{k} [95% CI]", "label accuracy (last 20 %)", "entropy end / start", "minutes"]]
    numbers: dict[str, Any] = {"search": search, "chosen": name, "ttt": {}}
    for reward in TTT_REWARDS:
        rows = [results[(reward, seed)] for seed in tseeds]
        d = {m: [x["comparisons"][m] for x in rows] for m in (f"avg@{k}", f"maj@{k}")}
        ent = [x["entropy_ratio"] for x in rows]
        ttt_table.append([
            reward, "; ".join(f"{x['base']:.3f} → {x['trained']:.3f}" for x in d[f"avg@{k}"]),
            "; ".join(f"{x['diff']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}]" for x in d[f"avg@{k}"]),
            "; ".join(f"{x['base']:.3f} → {x['trained']:.3f}" for x in d[f"maj@{k}"]),
            "; ".join(f"{x['diff']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}]" for x in d[f"maj@{k}"]),
            describe([x["label_accuracy"] for x in rows]), describe(ent),
            f"{statistics.fmean(x['seconds'] for x in rows) / 60:.1f}"])
        numbers["ttt"][reward] = rows
    why = _why(numbers, k, search[name])
    figure = plot_before_after({reward: [x["comparisons"][f"avg@{k}"] for x in numbers["ttt"][reward]]
                                for reward in TTT_REWARDS}, f"avg@{k}", r.out / "fig6_real_lm.png",
                               f"6. SmolLM2-135M-Instruct, test-time training on '{name}' ({c['problems']} problems)\n"
                               f"avg@{k} before (grey) and after each run (error bar: 95% CI of the paired difference)")
    return [Finding("real LM", CLAIM, _measured(p, tseeds, name), search_table, "measured", why, numbers,
                    [ttt_table])], [figure]


CLAIM = ("On a real LM, test-time training with majority vote sharpens the model's majority answer (maj@k = what "
         "avg@k converges to), a certainty reward does not, and gold helps (§8, §10).")


def _measured(p, seeds, name) -> str:
    return (f"{p.real_lm} (SmolLM2-135M-Instruct, the built-in real model, full fine-tune, fp32, CPU). Search: "
            f"{len(_candidates(p))} candidate sets of the arithmetic task's test split and prompt formats, avg@"
            f"{p.real_lm_k} / maj@{p.real_lm_k} / pass@{p.real_lm_k} of the base model (1 seed). "
            + ("" if name is None else
               f"Chosen: '{name}'. Test-time training on those problems unlabeled, {p.real_lm_steps} steps of "
               f"up to 8 prompts x 8 completions, lr {p.real_lm_lr:g}, rollout seeds {seeds}; evaluation before and "
               f"after the final step on the same problems with the same settings (sampling seeds "
               f"0..{p.real_lm_eval_seeds - 1}, k = {p.real_lm_k}), paired bootstrap CI over problems. The gold answers reach only the gold "
               "arm's reward and the evaluation."))


def _why(numbers: dict, k: int, chosen: dict) -> str:
    parts = [f"Base model on the chosen set: avg@{k} {chosen['avg']:.3f}, maj@{k} {chosen['maj']:.3f}."]
    for reward, rows in numbers["ttt"].items():
        avg = [x["comparisons"][f"avg@{k}"]["diff"] for x in rows]
        maj = [x["comparisons"][f"maj@{k}"]["diff"] for x in rows]
        sig = sum(x["comparisons"][f"avg@{k}"]["ci_low"] > 0 for x in rows)
        parts.append(f"{reward}: Δavg@{k} {statistics.fmean(avg):+.3f} (runs: {', '.join(f'{v:+.3f}' for v in avg)}; "
                     f"CI above 0 in {sig}/{len(rows)}), Δmaj@{k} {statistics.fmean(maj):+.3f}.")
    parts.append("Limits: one 135M model, one small set, a few dozen steps on the CPU; a direction, not a result "
                 "about larger models.")
    return " ".join(parts)
