"""Base models with controlled priors: supervised next-token pretraining on a task's train split.

The prior is set by what the model is trained to say, re-drawn every time a problem is seen, so the
model learns a *distribution* of answers per problem rather than one memorised label:

- ``aligned``: the gold answer with probability ``p_correct``, otherwise a random near miss (one digit
  changed). The most likely answer is usually right, but sampling is noisy, so majority vote beats a
  single sample: confidence and correctness are aligned.
- ``weak``: the gold answer, but only ``weak_steps`` of training: barely past the answer format.
- ``misaligned``: on problems the task's systematic wrong rule applies to (e.g. a dropped carry), the
  wrong-rule answer with probability ``wrong_rate`` and the gold answer otherwise; elsewhere the gold
  answer with probability ``p_correct``. The model is confidently wrong on that share.

A prior card (greedy, sampled and maj@8 accuracy, majority ratio and misaligned share, per problem
type) is measured on the validation split and saved as ``prior_card.json`` beside the model. Models are
cached by their full settings: building the same spec twice is instant.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import torch

from urlvr.config import PRIORS, PriorConfig
from urlvr.errors import UrlvrError
from urlvr.io import atomic_folder, cache_root, write_json

__all__ = ["PriorConfig", "PRIORS", "build_prior", "prior_card", "cache_dir", "format_card", "parse_model"]


def cache_dir() -> Path:
    """Where testbed models live: ``$URLVR_CACHE`` or ``~/.cache/urlvr``."""
    return cache_root() / "testbed"


def _targets(task, examples, spec: PriorConfig, rng: random.Random) -> list[str]:
    """One training completion per example, drawn from the prior's answer distribution."""
    out = []
    for ex in examples:
        if spec.prior == "misaligned":
            wrong = task.systematic_error(ex)
            if wrong is not None:
                out.append(task.target(dataclasses.replace(ex, answer=wrong)) if rng.random() < spec.wrong_rate
                           else task.target(ex))
                continue
        if spec.prior == "weak" or rng.random() < spec.p_correct:
            out.append(task.target(ex))
        else:
            wrong = task.near_miss(ex, rng)
            if spec.errors != "near_miss":
                wrong = derail(wrong, ex.answer or "", rng, "0123456789" if spec.errors == "derail" else NOISE)
            out.append(task.target(dataclasses.replace(ex, answer=wrong)))
    return out


NOISE = "".join(chr(c) for c in range(33, 127) if chr(c) not in "{}\\")
"""Printable characters a ``noise`` error may continue with (no braces or backslash: the answer stays boxed)."""


def derail(wrong: str, gold: str, rng: random.Random, alphabet: str = "0123456789") -> str:
    """``wrong`` with every digit after its first difference from ``gold`` redrawn from ``alphabet``: after the
    first mistake the rest of the answer is noise, so a model trained on it is unsure after an error.

    >>> derail("152", "122", random.Random(0))[:2], derail("122", "122", random.Random(0))
    ('15', '122')
    >>> len(derail("152", "122", random.Random(1), NOISE))
    3
    """
    first = next((i for i, (a, b) in enumerate(zip(wrong, gold)) if a != b), min(len(wrong), len(gold)))
    if wrong == gold:
        return wrong
    tail = "".join(rng.choice(alphabet) if ch.isdigit() else ch for ch in wrong[first + 1 :])
    return wrong[: first + 1] + tail


def _batch(tokenizer, prompts: list[str], targets: list[str]):
    """Right-padded (input_ids, labels) with the loss on the completion and its EOS only."""
    rows, labels = [], []
    p_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]  # one batched call each: the Rust tokenizer
    t_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    for pi, ti in zip(p_ids, t_ids):
        ti = ti + [tokenizer.eos_token_id]
        rows.append(pi + ti)
        labels.append([-100] * len(pi) + ti)
    L = max(map(len, rows))
    ids = torch.full((len(rows), L), tokenizer.pad_token_id, dtype=torch.long)
    lab = torch.full((len(rows), L), -100, dtype=torch.long)
    att = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labels)):
        ids[i, : len(r)] = torch.tensor(r)
        lab[i, : len(l)] = torch.tensor(l)
        att[i, : len(r)] = 1
    return ids, att, lab


def pretrain(spec: PriorConfig, progress: Callable[[int, int, float], None] | None = None):
    """Train a fresh model per ``spec``; returns (model, tokenizer, final loss)."""
    from urlvr.tasks import get_task
    from urlvr.testbed.models import build_model
    from urlvr.testbed.tokenizer import char_tokenizer

    task = get_task(spec.task, **spec.task_options)
    if spec.prior == "misaligned" and type(task).systematic_error is type(task).__mro__[-2].systematic_error:
        raise UrlvrError(f"task {spec.task!r} has no systematic wrong rule, so it has no misaligned prior; "
                         "use the arithmetic or linear task")
    tok = char_tokenizer(spec.junk_tokens)
    torch.manual_seed(spec.seed)
    model = build_model(spec.size, len(tok), seed=spec.seed)
    model.train()
    pool = task.examples("train", _pool_size(task), seed=spec.seed)
    rng = random.Random(spec.seed)
    steps = spec.weak_steps if spec.prior == "weak" else spec.steps
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    loss_val = float("nan")
    for step in range(steps):
        batch = [pool[rng.randrange(len(pool))] for _ in range(spec.batch_size)]
        ids, att, lab = _batch(tok, [task.prompt(e.problem) for e in batch], _targets(task, batch, spec, rng))
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_val = loss.item()
        if progress:
            progress(step + 1, steps, loss_val)
    model.eval()
    return model, tok, loss_val


def _available(task, split: str, n: int, seed: int):
    """Up to ``n`` examples of ``split``: all of them when the split is smaller."""
    try:
        return task.examples(split, n, seed=seed)
    except UrlvrError:
        pass
    lo, hi = 0, n  # the largest size that works lies in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            task.examples(split, mid, seed=seed)
            lo = mid
        except UrlvrError:
            hi = mid
    if lo == 0:
        raise UrlvrError(f"task {task.name!r} has no {split} problems")
    return task.examples(split, lo, seed=seed)


def _pool_size(task) -> int:
    """As many train problems as the task offers, up to 20k."""
    for n in (20000, 8000, 4000, 2000, 1000, 500, 200, 100, 50, 20):
        try:
            task.examples("train", n, seed=0)
            return n
        except UrlvrError:
            continue
    raise UrlvrError(f"task {task.name!r} has fewer than 20 train problems: too few to pretrain a prior")


def prior_card(model, tokenizer, task, n_problems: int = 200, k: int = 8, seed: int = 0) -> dict:
    """Greedy, sampled (τ=1) and maj@k accuracy, majority ratio and misaligned share, per problem type."""
    from urlvr.rollout import HFSampler, SamplingSettings

    examples = _available(task, "validation", n_problems, seed)
    sampler = HFSampler(model, tokenizer)
    prompts = [task.prompt(e.problem) for e in examples]
    max_new = 2 + max(len(tokenizer(task.target(e), add_special_tokens=False)["input_ids"]) for e in examples) * 2
    greedy = sampler.generate(prompts, SamplingSettings(max_new_tokens=max_new, greedy=True), seed=seed)
    sampled = sampler.generate([p for p in prompts for _ in range(k)], SamplingSettings(max_new_tokens=max_new), seed=seed)
    rows = defaultdict(lambda: defaultdict(float))
    for i, ex in enumerate(examples):
        answers = [task.extract(t) for t in sampled.texts[i * k : (i + 1) * k]]
        correct = [task.check(a, ex.answer) for a in answers]
        keys = [task.canonical(a) if a is not None else None for a in answers]
        counts = Counter(x for x in keys if x is not None)
        maj_key, maj_n = (counts.most_common(1)[0] if counts else (None, 0))
        maj_correct = maj_key is not None and correct[keys.index(maj_key)]
        for group in {"all", ex.problem.kind or "all"}:
            r = rows[group]
            r["problems"] += 1
            r["greedy_accuracy"] += task.check(task.extract(greedy.texts[i]), ex.answer)
            r["sampled_accuracy"] += sum(correct) / k
            r["maj_accuracy"] += maj_correct
            r["majority_ratio"] += maj_n / k
            r["misaligned_share"] += (maj_key is not None and not maj_correct)
            r["unparsable_rate"] += sum(a is None for a in answers) / k
    card = {}
    for group, r in rows.items():
        n = r.pop("problems")
        card[group] = {"problems": int(n), **{m: round(v / n, 4) for m, v in r.items()}}
    return {"k": k, "split": "validation", "by_kind": card}


def format_card(card: dict, title: str = "") -> str:
    cols = ["problems", "greedy_accuracy", "sampled_accuracy", "maj_accuracy", "majority_ratio", "misaligned_share"]
    short = ["n", "greedy", "sampled", f"maj@{card['k']}", "maj_ratio", "misaligned"]
    lines = [title] if title else []
    lines.append(f"{'kind':<14}" + "".join(f"{s:>11}" for s in short))
    for kind in sorted(card["by_kind"], key=lambda k: (k != "all", k)):
        r = card["by_kind"][kind]
        lines.append(f"{kind:<14}" + "".join(f"{r[c]:>11}" for c in cols))
    return "\n".join(lines)


def build_prior(spec: PriorConfig, force: bool = False, progress=None) -> tuple[Path, dict, bool]:
    """Build (or reuse) the model of ``spec``; returns (folder, prior card, reused?)."""
    from urlvr.tasks import get_task

    task = get_task(spec.task, **spec.task_options)
    out = cache_dir() / spec.key()
    if not force and (out / "prior_card.json").is_file():
        return out, json.loads((out / "prior_card.json").read_text()), True
    t0 = time.time()
    model, tok, loss = pretrain(spec, progress)
    card = prior_card(model, tok, task, spec.card_problems, seed=spec.seed)
    card.update(spec=dataclasses.asdict(spec), final_loss=round(loss, 4), build_seconds=round(time.time() - t0, 1),
                parameters=sum(p.numel() for p in model.parameters()))
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / "prior_card.json", card)  # its presence marks a complete build
    return out, card, False


def parse_model(name: str, task: str, task_options: dict | None = None):
    """The :class:`PriorConfig` of ``testbed:PRIOR[:TASK[:SIZE]][?KEY=VALUE&...]``; None for anything else."""
    import yaml

    if not name.startswith("testbed:"):
        return None
    head, _, query = name.partition("?")
    parts = head.split(":")[1:]
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise UrlvrError(f"bad testbed model {name!r}; write testbed:PRIOR[:TASK[:SIZE]][?key=value&...]")
    kw: dict[str, Any] = dict(zip(("prior", "task", "size"), parts))
    kw.setdefault("task", task)
    if kw["task"] == task:
        kw["task_options"] = dict(task_options or {})
    knobs = [f.name for f in dataclasses.fields(PriorConfig) if f.name not in ("prior", "task", "task_options", "size")]
    for item in filter(None, query.split("&")):
        key, eq, raw = item.partition("=")
        if not eq or key not in knobs:
            raise UrlvrError(f"bad testbed knob {item!r} in {name!r}; write key=value with key one of: "
                             f"{', '.join(knobs)}")
        kw[key] = yaml.safe_load(raw)
    return PriorConfig(**kw)
