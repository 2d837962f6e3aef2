r"""The evaluation engine: sample n >= k completions per problem with pinned settings, grade, record.

:func:`evaluate` takes an :class:`~urlvr.config.EvalConfig`: for each benchmark (a registered task,
``--problems`` problems of ``--split``; or a ``.json``/``.jsonl`` file read by the ``jsonl`` task with
the ``math``, ``choice`` or ``exact`` grader, never guessed) and each of ``seeds`` seeds it samples n
completions per problem, grades them in one batch per generate call (math-verify in worker
processes), clusters answers for maj@k and summarises with :mod:`urlvr.evaluation.metrics`: avg@k
(mean ± std over seeds), unbiased pass@j for every j <= n, maj@k over equivalence classes, optional
greedy accuracy, truncation and unparsable rates, each with a 95 % bootstrap CI over problems; with
``certify_eps`` > 0 the Martingale Majority Certificate over each problem's n samples (certified
rate, votes to certify, certified and adaptive-votes accuracy, share of the votes used).

The results record every setting (model path and weights hash, template, system prompt, sampling
settings, seeds, k, n, grader version, package versions, data path and sha256), a per-problem table
for paired comparisons (:mod:`urlvr.evaluation.compare`) and are checked against
:data:`RESULTS_SCHEMA`. :func:`write_results` writes ``samples.jsonl`` (one row per completion) and
then ``results.json``, atomically.

:func:`sample_problems` is the one sampling-and-grading routine: the trainer's validation uses it too.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from urlvr.config import EvalConfig
from urlvr.console import Bar, echo
from urlvr.errors import UrlvrError
from urlvr.io import sha256_file
from urlvr.prompts import Renderer
from urlvr.seeds import derive_seed
from urlvr.types import AnswerRules, SamplingSettings

__all__ = [
    "evaluate", "sample_problems", "load_benchmark", "Benchmark", "write_results", "load_results", "RESULTS_SCHEMA",
    "check_schema", "weights_digest", "default_out_dir", "SCHEMA_NAME",
]

SCHEMA_NAME = "urlvr.eval/2"
"""2: the rendered prompt of each benchmark is recorded (and compared); chat is auto|on|off."""


# ---- sampling and grading ----------------------------------------------------------------------------

def sample_problems(sampler, task, examples, k: int, settings: SamplingSettings, seed: int,
                    rules: AnswerRules | None = None, grader: Any = None, render: Callable | None = None) -> list[dict]:
    """k completions per example, graded in one batch; one row per completion.

    Row keys: id, kind, seed, sample, completion, answer, correct, cluster, truncated, length.
    ``rules`` read and cluster the answers (default: the task's, canonical keys); ``grader`` does the
    math-verify gold checks (default: the shared one); ``render(problem) -> str`` builds the prompt
    (default ``task.prompt``; the evaluation adds a system prompt or a chat template there).
    """
    rules = rules or task.rules()
    render = render or task.prompt
    prompts = [render(e.problem) for e in examples for _ in range(k)]
    batch = sampler.generate(prompts, settings, seed=seed)
    answers = [rules.extract(t) for t in batch.texts]
    correct = task.check_many(answers, [e.answer for e in examples for _ in range(k)], grader)
    rows = []
    for j, ex in enumerate(examples):
        ids = rules.cluster(answers[j * k : (j + 1) * k])
        for i in range(k):
            b = j * k + i
            rows.append({
                "id": ex.problem.id, "kind": ex.problem.kind, "seed": seed, "sample": i,
                "completion": batch.texts[b], "answer": answers[b], "correct": correct[b], "cluster": ids[i],
                "truncated": bool(batch.truncated[b]), "length": int(batch.mask[b].sum()),
            })
    return rows


# ---- data -----------------------------------------------------------------------------------------

@dataclass
class Benchmark:
    """One benchmark's task, problems and data record."""

    name: str
    task: Any
    examples: list
    data: dict
    grader: str
    equivalence: str


# ---- data -----------------------------------------------------------------------------------------


def load_benchmark(spec: str, cfg: EvalConfig) -> Benchmark:
    """A registered task name or a JSON/JSONL path -> :class:`Benchmark`."""
    from urlvr.tasks import get_task, task_names

    if spec in task_names() and spec != "jsonl":
        task = get_task(spec, **cfg.options)
        if cfg.template is not None:
            task.template = cfg.template  # checked by EvalConfig
        n = min(cfg.problems, cfg.limit or cfg.problems)
        examples = task.examples(cfg.split, n, seed=0)
        blob = json.dumps([[e.problem.id, e.problem.question, e.answer] for e in examples]).encode()
        data = {"task": spec, "path": None, "sha256": hashlib.sha256(blob).hexdigest(), "options": cfg.options,
                "split": cfg.split, "problems": len(examples), "limit": cfg.limit}
        equivalence = "canonical" if cfg.equivalence == "auto" else cfg.equivalence
        return Benchmark(spec, task, examples, data, f"task:{spec}", equivalence)
    path = Path(spec)
    if path.suffix not in (".json", ".jsonl", ".parquet") and not path.is_dir():
        tasks = ", ".join(t for t in task_names() if t != "jsonl")
        raise UrlvrError(f"--data {spec!r} is neither a registered task ({tasks}) nor a .json/.jsonl/.parquet file "
                         "or a save_to_disk folder")
    if not path.exists():
        raise UrlvrError(f"{path}: file not found; check the --data path")
    task = get_task("jsonl", path=str(path), grader=cfg.grader, template=cfg.template, limit=cfg.limit, **cfg.options)
    examples = task.examples("test", len(task))
    if cfg.grader == "math" and all(len(e.answer or "") == 1 and e.answer in "ABCDEFGHIJ" for e in examples):
        echo(f"warning: every gold answer in {path} is a letter; for multiple choice pass --grader choice")
    data = {"task": "jsonl", "path": str(path.resolve()), "sha256": _data_digest(path), "options": cfg.options,
            "split": "all", "problems": len(examples), "limit": cfg.limit}
    equivalence = cfg.equivalence if cfg.equivalence != "auto" else ("math" if cfg.grader == "math" else "canonical")
    return Benchmark(path.stem, task, examples, data, cfg.grader, equivalence)


def _data_digest(path: Path) -> str:
    """sha256 of a data file, or of a folder's files (names and contents, sorted)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


# ---- model ----------------------------------------------------------------------------------------

def weights_digest(folder: Path) -> tuple[str, list[dict]]:
    """sha256 over the weight files (name and content hash of each, sorted) and the file list.

    A LoRA adapter checkpoint counts its base model's weight files too (as ``base/NAME``): the same
    adapters on another base are another model.
    """
    from urlvr.loading import adapter_base, is_adapter

    def weights(f: Path) -> list[Path]:
        return sorted({p for pat in ("*.safetensors", "pytorch_model*.bin", "*.index.json") for p in f.glob(pat)
                       if p.is_file()})

    named = [(p.name, p) for p in weights(folder)]
    if is_adapter(folder):
        named += [(f"base/{p.name}", p) for p in weights(adapter_base(folder))]
    h = hashlib.sha256()
    for name, f in named:
        h.update(f"{name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest(), [{"name": name, "bytes": f.stat().st_size} for name, f in named]


def package_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import version

    import numpy
    import torch
    import transformers

    import urlvr

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "math-verify": version("math-verify"), "numpy": numpy.__version__, "urlvr": urlvr.__version__}


# ---- the evaluation -------------------------------------------------------------------------------

def evaluate(cfg: EvalConfig, progress: bool = True) -> tuple[dict, list[dict]]:
    """Run the evaluation of ``cfg``; returns ``(results, samples)`` (nothing is written)."""
    from urlvr.evaluation.metrics import BOOTSTRAP, benchmark_metrics
    from urlvr.grading import GRADER_CONFIG, grader_version, shared_grader
    from urlvr.loading import load_model, pick_device, pick_dtype, resolve_model
    from urlvr.rollout import HFSampler

    t0 = time.time()
    benches = [load_benchmark(spec, cfg) for spec in cfg.data]
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise UrlvrError(f"two benchmarks share a name ({', '.join(names)}); rename one of the files")
    first = benches[0]
    path = Path(resolve_model(cfg.model, first.data["task"], first.data["options"] if first.data["path"] is None
                              else {"path": first.data["path"]}))
    digest, files = weights_digest(path)
    model, tok = load_model(path, cfg.device, cfg.dtype)
    device = pick_device(cfg.device)
    grader = shared_grader(cfg.grader_workers, cfg.grader_timeout)
    sampler = HFSampler(model, tok, batch_size=cfg.batch_size)  # stops at EOS and chat end-of-turn tokens
    seeds, n = list(range(cfg.seeds)), cfg.n_samples
    sampled = SamplingSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    greedy = SamplingSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens, greedy=True)
    per_call = max(1, cfg.batch_size // n)
    calls = sum(math.ceil(len(b.examples) / per_call) * len(seeds)
                + (math.ceil(len(b.examples) / cfg.batch_size) if cfg.greedy else 0) for b in benches)
    samples, records = [], []
    with Bar(calls, "eval", unit="batch", enabled=progress) as bar:
        for b in benches:
            render = Renderer(b.task.prompt, tok, cfg.chat, cfg.system_prompt)
            rules = b.task.rules(b.equivalence, grader.clusterer())
            run = dict(sampler=sampler, bench=b, render=render, rules=rules, grader=grader, bar=bar)
            rows = _sample(**run, n=n, settings=sampled, seeds=seeds, per_call=per_call)
            greedy_rows = (_sample(**run, n=1, settings=greedy, seeds=[None], per_call=cfg.batch_size)
                           if cfg.greedy else [])
            ids = [e.problem.id for e in b.examples]
            metrics, table = benchmark_metrics(rows, cfg.k, n, ids, seeds, greedy_rows, cfg.certify_eps)
            records.append({"name": b.name, "data": b.data, "grader": b.grader, "equivalence": b.equivalence,
                            "template": b.task.template, "rendering": render.describe(b.examples[0].problem),
                            "metrics": metrics, "per_problem": table,
                            "cross_check": _cross_check(b, rows, grader) if cfg.cross_check else None})
            samples += [{"benchmark": b.name, **r} for r in rows + greedy_rows]
    results = {
        "schema": SCHEMA_NAME,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["urlvr", *sys.argv[1:]]),
        "model": {"name": cfg.model, "path": str(path.resolve()), "weights_sha256": digest, "weights_files": files},
        "settings": {"k": cfg.k, "n": n, "seeds": seeds, "temperature": cfg.temperature, "top_p": cfg.top_p,
                     "max_new_tokens": cfg.max_new_tokens, "greedy": cfg.greedy, "system_prompt": cfg.system_prompt,
                     "chat": cfg.chat, "template_override": cfg.template, "batch_size": cfg.batch_size,
                     "certify_eps": cfg.certify_eps,
                     "device": str(device), "dtype": str(pick_dtype(cfg.dtype, device)).replace("torch.", ""),
                     "bootstrap": dict(BOOTSTRAP), "config": cfg.to_dict()},
        "grader": {"version": grader_version(), "config": GRADER_CONFIG, "stats": dict(grader.stats)},
        "versions": package_versions(),
        "benchmarks": records,
        "seconds": round(time.time() - t0, 2),
    }
    check_schema(results)
    return results, samples


def _sample(sampler, bench: Benchmark, render, rules, grader, bar: Bar, n: int, settings, seeds: list,
            per_call: int) -> list[dict]:
    """n completions per problem and seed, ``per_call`` problems per generate call, seeded by call."""
    rows = []
    for seed in seeds:
        for start in range(0, len(bench.examples), per_call):
            chunk = bench.examples[start : start + per_call]
            stream = derive_seed(seed, bench.name, start)
            part = sample_problems(sampler, bench.task, chunk, n, settings, stream, rules, grader, render)
            for r in part:
                r.update(seed=seed, stream_seed=stream, greedy=settings.greedy)
            rows += part
            bar.update(1)
    return rows


def _cross_check(b: Benchmark, rows: list[dict], grader) -> dict:
    """Distinct (gold, answer) pairs on which math-verify and the canonical normaliser disagree."""
    if b.grader != "math":
        return {"pairs": 0, "disagreements": [], "note": f"grader {b.grader} does not use math-verify"}
    gold = {e.problem.id: e.answer for e in b.examples}
    pairs = sorted({(gold[r["id"]], r["answer"]) for r in rows
                    if r["answer"] is not None and gold[r["id"]] is not None})
    return {"pairs": len(pairs), "disagreements": grader.cross_check(pairs)}


# ---- files ---------------------------------------------------------------------------------

def write_results(out: Path, results: dict, samples: list[dict]) -> None:
    """``samples.jsonl`` then ``results.json`` (its presence marks a complete evaluation), atomically."""
    from urlvr.io import atomic_write, write_json

    with atomic_write(out / "samples.jsonl") as f:
        for r in samples:
            f.write(json.dumps(r) + "\n")
    write_json(out / "results.json", results)


def load_results(path: str | Path) -> dict:
    """A ``results.json`` (or the folder holding one), checked against the schema."""
    from urlvr.io import read_json

    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    results = read_json(p)
    check_schema(results, where=f"{p} (not an 'urlvr eval' result?)")
    return results


def default_out_dir(model: str) -> Path:
    """``runs/eval/MODEL-TIME``: where an evaluation goes when no folder is given."""
    name = Path(model.replace(":", "-")).name or "model"
    return Path("runs") / "eval" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


# ---- results: schema and comparison ---------------------------------------------------------------

_NUM = (int, float)
_STR_OR_NONE = (str, type(None))
_METRIC = {"mean": _NUM, "std_over_seeds": _NUM, "ci_low": _NUM, "ci_high": _NUM, "per_seed": [_NUM]}
RESULTS_SCHEMA: dict[str, Any] = {
    "schema": str,
    "created": str,
    "command": str,
    "model": {"name": str, "path": str, "weights_sha256": str, "weights_files": [{"name": str, "bytes": int}]},
    "settings": {
        "k": int, "n": int, "seeds": [int], "temperature": _NUM, "top_p": _NUM, "max_new_tokens": int,
        "greedy": bool, "system_prompt": _STR_OR_NONE, "chat": str, "template_override": _STR_OR_NONE,
        "batch_size": int, "device": str, "dtype": str,
        "bootstrap": {"resamples": int, "permutations": int, "seed": int, "level": _NUM},
    },
    "grader": {"version": str, "config": dict, "stats": dict},
    "versions": {"python": str, "torch": str, "transformers": str, "math-verify": str, "numpy": str, "urlvr": str},
    "benchmarks": [{
        "name": str,
        "data": {"task": str, "path": _STR_OR_NONE, "sha256": str, "options": dict, "split": str,
                 "problems": int, "limit": (int, type(None))},
        "grader": str, "equivalence": str, "template": str,
        "rendering": {"chat": str, "uses_chat_template": bool, "system_prompt": _STR_OR_NONE, "rendered": str},
        "metrics": {"*": _METRIC},
        "per_problem": [{"id": str, "*": (list, bool)}],
        "cross_check": (dict, type(None)),
    }],
    "seconds": _NUM,
}
"""Required keys and types of ``results.json``: a type or tuple of types, a nested dict, a one-item
list (every element), and ``"*"`` for every other key of a dict. Extra keys are allowed."""


def check_schema(obj: Any, schema: Any = RESULTS_SCHEMA, where: str = "results") -> None:
    """Raise UrlvrError naming the first key that is missing or of the wrong type."""
    if isinstance(schema, dict):
        if not isinstance(obj, dict):
            raise UrlvrError(f"{where}: expected an object, got {type(obj).__name__}")
        for key, sub in schema.items():
            if key == "*":
                for other in set(obj) - set(schema):
                    check_schema(obj[other], sub, f"{where}.{other}")
            elif key not in obj:
                raise UrlvrError(f"{where}: missing key {key!r}")
            else:
                check_schema(obj[key], sub, f"{where}.{key}")
    elif isinstance(schema, list):
        if not isinstance(obj, list):
            raise UrlvrError(f"{where}: expected a list, got {type(obj).__name__}")
        for i, item in enumerate(obj):
            check_schema(item, schema[0], f"{where}[{i}]")
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        if not isinstance(obj, types) or (isinstance(obj, bool) and bool not in types):  # bool is an int
            names = " or ".join(t.__name__ for t in types)
            raise UrlvrError(f"{where}: expected {names}, got {type(obj).__name__}")


