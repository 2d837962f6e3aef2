r"""``urlvr eval`` and ``urlvr compare``: an evaluation whose every number can be audited.

``urlvr eval --model M --data D [--data D2 ...]`` samples n >= k completions per problem for each
of ``--seeds`` seeds with pinned settings and reports, per benchmark, avg@k (mean ± std over seeds),
unbiased pass@j for every j <= n, maj@k over equivalence classes of parsed answers, optional greedy
accuracy, truncation and unparsable rates, each with a 95 % bootstrap CI over problems (see
:mod:`urlvr.evaluation` for the definitions). ``D`` is a registered task (``arithmetic``, ``linear``,
``countdown``: ``--problems`` problems of ``--split``, default test) or a ``.json``/``.jsonl`` file
read by the ``jsonl`` task with ``--grader math`` (default; math-verify in worker processes),
``choice`` (a letter, e.g. GPQA) or ``exact``. The grader is never guessed: pass ``--grader choice``
for multiple choice (a warning says so when every gold answer is a letter).

The output folder holds ``results.json`` (every setting: model path and weights hash, template,
system prompt, sampling settings, seeds, k, n, grader version, package versions, data path and
sha256; metrics; a per-problem table for paired comparisons; validated against
:data:`urlvr.evaluation.RESULTS_SCHEMA`) and ``samples.jsonl`` (one row per completion: benchmark,
prompt id, seed, sample index, completion, extracted answer, correct). Both are written atomically,
``results.json`` last.

``urlvr compare BASE TRAINED`` pairs two results problem by problem and refuses (exit 2) results that
differ in template, system prompt, max tokens, sampling settings, k, n, seeds, data or grader unless
``--force``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from urlvr.console import echo
from urlvr.errors import UrlvrError

__all__ = ["register", "EvalConfig", "evaluate", "load_results", "cmd_eval", "cmd_compare"]

SCHEMA_NAME = "urlvr.eval/1"
_EVAL_HELP = ("Sample n >= k completions per problem for each seed with pinned settings; report avg@k (mean ± std "
              "over seeds), unbiased pass@j for j <= n, maj@k over equivalence classes of parsed answers, greedy "
              "accuracy (--greedy), truncation and unparsable rates, with 95% bootstrap CIs over problems. Writes "
              "results.json and samples.jsonl to --out. File benchmarks use --grader math unless told otherwise "
              "(pass --grader choice for lettered multiple choice such as GPQA).")
_FILE_OPTIONS = ("path", "grader", "template", "limit")  # set by flags, not by --option


@dataclass(frozen=True)
class EvalConfig:
    """Everything that determines an evaluation (recorded in ``results.json``)."""

    model: str
    """Local checkpoint folder or ``testbed:PRIOR[:TASK[:SIZE]]``."""
    data: tuple[str, ...]
    """Benchmarks: registered task names or ``.json``/``.jsonl`` paths."""
    k: int = 8
    """Samples per problem for avg@k and maj@k."""
    n: int | None = None
    """Samples drawn per problem and seed (>= k; pass@j is reported for every j <= n). Default k."""
    seeds: int = 3
    """Sampling seeds 0..seeds-1."""
    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    template: str | None = None
    """Prompt template with ``{question}``; default: the task's (files: a ``\\boxed{}`` instruction)."""
    system_prompt: str | None = None
    """Prepended as ``SYSTEM\\n\\n`` (or the system turn with ``chat``)."""
    chat: bool = False
    """Render prompts with the tokenizer's chat template."""
    greedy: bool = False
    """Also one greedy completion per problem (greedy accuracy)."""
    limit: int | None = None
    """At most this many problems per benchmark (files: the first rows)."""
    problems: int = 200
    """Problems drawn from a registered task."""
    split: str = "test"
    """Split of a registered task."""
    options: dict = field(default_factory=dict)
    """Task options (``--option key=value``)."""
    grader: str = "math"
    """Grader of file benchmarks: math, choice or exact."""
    equivalence: str = "auto"
    """maj@k classes: math (math-verify), canonical (the task's key) or auto (math for the math grader)."""
    batch_size: int = 256
    """Sequences per generate call (fixed: results depend on it only through the random stream)."""
    device: str = "auto"
    dtype: str = "auto"
    cross_check: bool = False
    """Report where the canonical normaliser and math-verify disagree (math grader)."""

    @property
    def n_samples(self) -> int:
        return self.n if self.n is not None else self.k

    def validate(self) -> None:
        checks = [(self.k >= 1, f"--k must be >= 1, got {self.k}"),
                  (self.n_samples >= self.k, f"--k ({self.k}) must be <= --n ({self.n_samples}): avg@k and maj@k "
                                             "use k of the n samples drawn per problem"),
                  (self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}"),
                  (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1, got {self.max_new_tokens}"),
                  (self.temperature > 0, f"--temperature must be > 0, got {self.temperature} (use --greedy)"),
                  (0 < self.top_p <= 1, f"--top-p must be in (0, 1], got {self.top_p}"),
                  (self.limit is None or self.limit >= 1, f"--limit must be >= 1, got {self.limit}"),
                  (self.problems >= 1, f"--problems must be >= 1, got {self.problems}"),
                  (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
                  (self.equivalence in ("auto", "math", "canonical"),
                   f"--equivalence must be auto, math or canonical, got {self.equivalence!r}"),
                  (len(self.data) >= 1, "give at least one --data")]
        for ok, msg in checks:
            if not ok:
                raise UrlvrError(msg)
        if self.template is not None:
            _checked_template(self.template)
        bad = sorted(set(self.options) & set(_FILE_OPTIONS))
        if bad:
            raise UrlvrError(f"set {', '.join(bad)} with its own flag (--data, --grader, --template, --limit), "
                             "not with --option")


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

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_benchmark(spec: str, cfg: EvalConfig) -> Benchmark:
    """A registered task name or a JSON/JSONL path -> :class:`Benchmark`."""
    from urlvr.tasks import get_task, task_names

    if spec in task_names() and spec != "jsonl":
        task = get_task(spec, **cfg.options)
        if cfg.template is not None:
            task.template = _checked_template(cfg.template)
        n = min(cfg.problems, cfg.limit or cfg.problems)
        examples = task.examples(cfg.split, n, seed=0)
        blob = json.dumps([[e.problem.id, e.problem.question, e.answer] for e in examples]).encode()
        data = {"task": spec, "path": None, "sha256": hashlib.sha256(blob).hexdigest(), "options": cfg.options,
                "split": cfg.split, "problems": len(examples), "limit": cfg.limit}
        equivalence = "canonical" if cfg.equivalence == "auto" else cfg.equivalence
        return Benchmark(spec, task, examples, data, f"task:{spec}", equivalence)
    path = Path(spec)
    if path.suffix not in (".json", ".jsonl"):
        tasks = ", ".join(t for t in task_names() if t != "jsonl")
        raise UrlvrError(f"--data {spec!r} is neither a registered task ({tasks}) nor a .json/.jsonl file")
    if not path.is_file():
        raise UrlvrError(f"{path}: file not found; check the --data path")
    task = get_task("jsonl", path=str(path), grader=cfg.grader, template=cfg.template, limit=cfg.limit, **cfg.options)
    examples = task.examples("test", len(task))
    if cfg.grader == "math" and all(len(e.answer or "") == 1 and e.answer in "ABCDEFGHIJ" for e in examples):
        echo(f"warning: every gold answer in {path} is a letter; for multiple choice pass --grader choice")
    data = {"task": "jsonl", "path": str(path.resolve()), "sha256": sha256_file(path), "options": cfg.options,
            "split": "all", "problems": len(examples), "limit": cfg.limit}
    equivalence = cfg.equivalence if cfg.equivalence != "auto" else ("math" if cfg.grader == "math" else "canonical")
    return Benchmark(path.stem, task, examples, data, cfg.grader, equivalence)


def _checked_template(template: str) -> str:
    """The jsonl task's template check, worded for the flag."""
    from urlvr.tasks.files import _check_template

    try:
        return _check_template(template)
    except UrlvrError as e:
        raise UrlvrError("--template" + str(e).removeprefix("jsonl: template")) from None


# ---- model ----------------------------------------------------------------------------------------

def weights_digest(folder: Path) -> tuple[str, list[dict]]:
    """sha256 over the weight files (name and content hash of each, sorted) and the file list."""
    files = sorted({f for pat in ("*.safetensors", "pytorch_model*.bin", "*.index.json") for f in folder.glob(pat)
                    if f.is_file()})
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest(), [{"name": f.name, "bytes": f.stat().st_size} for f in files]


def make_render(task, tokenizer, system_prompt: str | None, chat: bool) -> Callable:
    """``problem -> prompt text``: the task template, then the system prompt or the chat template."""
    if not chat:
        if system_prompt is None:
            return task.prompt
        return lambda problem: f"{system_prompt}\n\n{task.prompt(problem)}"
    if not getattr(tokenizer, "chat_template", None):
        raise UrlvrError("--chat: the model's tokenizer has no chat template; drop --chat")
    bos = tokenizer.bos_token
    adds_bos = bos is not None and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]

    def render(problem) -> str:
        turns = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
        turns.append({"role": "user", "content": task.prompt(problem)})
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return text[len(bos):] if adds_bos and text.startswith(bos) else text  # the sampler adds BOS

    return render


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
    from urlvr.evaluation import BOOTSTRAP, benchmark_metrics, check_schema
    from urlvr.grading import GRADER_CONFIG, default_grader, grader_version
    from urlvr.loading import check_model_dir, load_model, pick_device, pick_dtype
    from urlvr.rollout import HFSampler, SamplingSettings
    from urlvr.testbed.priors import resolve_model

    cfg.validate()
    t0 = time.time()
    benches = [load_benchmark(spec, cfg) for spec in cfg.data]
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise UrlvrError(f"two benchmarks share a name ({', '.join(names)}); rename one of the files")
    path = check_model_dir(resolve_model(cfg.model))
    digest, files = weights_digest(path)
    model, tok = load_model(path, cfg.device, cfg.dtype)
    device = pick_device(cfg.device)
    sampler = HFSampler(model, tok, batch_size=cfg.batch_size)
    seeds, n = list(range(cfg.seeds)), cfg.n_samples
    sampled = SamplingSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    greedy = SamplingSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens, greedy=True)
    per_call = max(1, cfg.batch_size // n)
    calls = sum(math.ceil(len(b.examples) / per_call) * len(seeds)
                + (math.ceil(len(b.examples) / cfg.batch_size) if cfg.greedy else 0) for b in benches)
    bar = _bar(calls, progress)
    samples, records = [], []
    for b in benches:
        render = make_render(b.task, tok, cfg.system_prompt, cfg.chat)
        rows = _sample(sampler, b, render, n, sampled, seeds, per_call, bar)
        greedy_rows = _sample(sampler, b, render, 1, greedy, [None], cfg.batch_size, bar) if cfg.greedy else []
        ids = [e.problem.id for e in b.examples]
        metrics, table = benchmark_metrics(rows, cfg.k, n, ids, seeds, greedy_rows)
        records.append({"name": b.name, "data": b.data, "grader": b.grader, "equivalence": b.equivalence,
                        "template": b.task.template, "metrics": metrics, "per_problem": table,
                        "cross_check": _cross_check(b, rows) if cfg.cross_check else None})
        samples += [{"benchmark": b.name, **r} for r in rows + greedy_rows]
    bar.close()
    results = {
        "schema": SCHEMA_NAME,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["urlvr", *sys.argv[1:]]),
        "model": {"name": cfg.model, "path": str(path.resolve()), "weights_sha256": digest, "weights_files": files},
        "settings": {"k": cfg.k, "n": n, "seeds": seeds, "temperature": cfg.temperature, "top_p": cfg.top_p,
                     "max_new_tokens": cfg.max_new_tokens, "greedy": cfg.greedy, "system_prompt": cfg.system_prompt,
                     "chat": cfg.chat, "template_override": cfg.template, "batch_size": cfg.batch_size,
                     "device": str(device), "dtype": str(pick_dtype(cfg.dtype, device)).replace("torch.", ""),
                     "bootstrap": dict(BOOTSTRAP), "config": _jsonable_config(cfg)},
        "grader": {"version": grader_version(), "config": GRADER_CONFIG, "stats": dict(default_grader().stats)},
        "versions": package_versions(),
        "benchmarks": records,
        "seconds": round(time.time() - t0, 2),
    }
    check_schema(results)
    return results, samples


def _sample(sampler, b: Benchmark, render, n: int, settings, seeds: list, per_call: int, bar) -> list[dict]:
    """n completions per problem and seed, ``per_call`` problems per generate call, seeded by call."""
    from urlvr.evaluation import sample_problems, stream_seed

    rows = []
    for seed in seeds:
        for start in range(0, len(b.examples), per_call):
            chunk = b.examples[start : start + per_call]
            stream = stream_seed(seed, b.name, start)
            part = sample_problems(sampler, b.task, chunk, n, settings, stream, b.equivalence, render)
            for r in part:
                r.update(seed=seed, stream_seed=stream, greedy=settings.greedy)
            rows += part
            bar.update(1)
    return rows


def _cross_check(b: Benchmark, rows: list[dict]) -> dict:
    """Distinct (gold, answer) pairs on which math-verify and the canonical normaliser disagree."""
    from urlvr.grading import cross_check

    if b.grader != "math":
        return {"pairs": 0, "disagreements": [], "note": f"grader {b.grader} does not use math-verify"}
    gold = {e.problem.id: e.answer for e in b.examples}
    pairs = sorted({(gold[r["id"]], r["answer"]) for r in rows
                    if r["answer"] is not None and gold[r["id"]] is not None})
    return {"pairs": len(pairs), "disagreements": cross_check(pairs)}


def _jsonable_config(cfg: EvalConfig) -> dict:
    d = asdict(cfg)
    d["data"] = list(cfg.data)
    return d


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="eval", unit="batch", file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                disable=not enabled)


# ---- files and tables -----------------------------------------------------------------------------

def write_results(out: Path, results: dict, samples: list[dict]) -> None:
    """``samples.jsonl`` then ``results.json`` (its presence marks a complete evaluation), atomically."""
    from urlvr.files import atomic_write, write_json

    with atomic_write(out / "samples.jsonl") as f:
        for r in samples:
            f.write(json.dumps(r) + "\n")
    write_json(out / "results.json", results)


def load_results(path: str | Path) -> dict:
    """A ``results.json`` (or the folder holding one), checked against the schema."""
    from urlvr.evaluation import check_schema
    from urlvr.files import read_json

    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    results = read_json(p)
    check_schema(results, where=f"{p} (not an 'urlvr eval' result?)")
    return results


def format_results(results: dict) -> str:
    s = results["settings"]
    lines = []
    for b in results["benchmarks"]:
        lines.append(f"{b['name']}: {b['data']['problems']} problems, k={s['k']}, n={s['n']}, seeds={len(s['seeds'])}, "
                     f"grader={b['grader']}, maj classes={b['equivalence']}")
        lines.append(f"  {'metric':<18}{'mean':>8}{'± std':>8}   95% CI")
        for m, v in b["metrics"].items():
            ci = f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
            lines.append(f"  {m:<18}{v['mean']:>8.3f}{v['std_over_seeds']:>8.3f}   {ci}")
        cc = b.get("cross_check")
        if cc is not None:
            lines.append(f"  cross-check: {len(cc['disagreements'])} of {cc['pairs']} (gold, answer) pairs where "
                         "math-verify and the canonical normaliser disagree")
    return "\n".join(lines)


def format_comparison(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<16}{'metric':<18}{'base':>8}{'trained':>9}{'diff':>8}   {'95% CI':<18}{'p':>7}"]
    for r in rows:
        ci = f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        lines.append(f"{r['benchmark']:<16}{r['metric']:<18}{r['base']:>8.3f}{r['trained']:>9.3f}{r['diff']:>+8.3f}   "
                     f"{ci:<18}{r['p_value']:>7.4f}")
    return "\n".join(lines)


# ---- commands -------------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    from urlvr.cli import _parse_options

    cfg = EvalConfig(model=args.model, data=tuple(args.data), k=args.k, n=args.n, seeds=args.seeds,
                     max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                     template=args.template, system_prompt=args.system_prompt, chat=args.chat, greedy=args.greedy,
                     limit=args.limit, problems=args.problems, split=args.split, options=_parse_options(args.option),
                     grader=args.grader, equivalence=args.equivalence, batch_size=args.batch_size,
                     device=args.device, dtype=args.dtype, cross_check=args.cross_check)
    cfg.validate()
    out = Path(args.out) if args.out else _default_out(cfg.model)
    results, samples = evaluate(cfg, progress=not args.quiet)
    write_results(out, results, samples)
    print(format_results(results))
    echo(f"wrote {out / 'results.json'} and {out / 'samples.jsonl'}")
    return 0


def _default_out(model: str) -> Path:
    name = Path(model.replace(":", "-")).name or "model"
    return Path("runs") / "eval" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_compare(args) -> int:
    from urlvr.evaluation import compare_results, settings_differences

    base, trained = load_results(args.base), load_results(args.trained)
    diffs = settings_differences(base, trained)
    if diffs and not args.force:
        raise UrlvrError(f"{args.base} and {args.trained} were evaluated differently ({'; '.join(diffs)}); "
                         "compare like with like, or pass --force")
    for d in diffs:
        echo(f"warning (--force): different {d}")
    for key in sorted(set(base["versions"]) | set(trained["versions"])):
        a, b = base["versions"].get(key), trained["versions"].get(key)
        if a != b:
            echo(f"note: {key} {a} vs {b}")
    boot = {k: v for k, v in base["settings"]["bootstrap"].items()}
    rows = compare_results(base, trained, **boot)
    print(f"base: {base['model']['name']}  trained: {trained['model']['name']}  "
          "(paired over problems; 95% paired-bootstrap CI; two-sided sign-flip permutation p)")
    print(format_comparison(rows))
    if args.out:
        from urlvr.files import write_json

        write_json(args.out, {"base": str(args.base), "trained": str(args.trained), "forced_differences": diffs,
                              "comparisons": rows})
    return 0


def register(subparsers) -> None:
    """Add ``eval`` and ``compare`` to the ``urlvr`` command."""
    e = subparsers.add_parser("eval", description=_EVAL_HELP,
                              help="avg@k over seeds, pass@k, maj@k, bootstrap CIs; results.json + samples.jsonl")
    e.add_argument("--model", required=True, help="checkpoint folder or testbed:PRIOR[:TASK[:SIZE]]")
    e.add_argument("--data", required=True, action="append",
                   help="task name (arithmetic, linear, countdown) or .json/.jsonl file; repeatable")
    e.add_argument("--k", type=int, default=8, help="samples for avg@k and maj@k (default 8)")
    e.add_argument("--n", type=int, default=None, help="samples drawn per problem and seed, >= k (default k)")
    e.add_argument("--seeds", type=int, default=3, help="sampling seeds 0..S-1 (default 3)")
    e.add_argument("--max-new-tokens", type=int, default=1024)
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--top-p", type=float, default=1.0)
    e.add_argument("--template", default=None, help="prompt template with {question} (default: the task's)")
    e.add_argument("--system-prompt", default=None)
    e.add_argument("--chat", action="store_true", help="render prompts with the tokenizer's chat template")
    e.add_argument("--greedy", action="store_true", help="also report greedy accuracy")
    e.add_argument("--limit", type=int, default=None, help="at most N problems per benchmark")
    e.add_argument("--problems", type=int, default=200, help="problems drawn from a registered task (default 200)")
    e.add_argument("--split", default="test", help="split of a registered task (default test)")
    e.add_argument("--option", action="append", metavar="KEY=VALUE", help="task option, e.g. digits=2")
    e.add_argument("--grader", default="math", choices=("math", "choice", "exact"),
                   help="grader of file benchmarks (default math; choice for lettered multiple choice)")
    e.add_argument("--equivalence", default="auto", choices=("auto", "math", "canonical"),
                   help="maj@k answer classes (auto: math for the math grader, else the task's key)")
    e.add_argument("--batch-size", type=int, default=256, help="sequences per generate call (default 256)")
    e.add_argument("--device", default="auto")
    e.add_argument("--dtype", default="auto")
    e.add_argument("--cross-check", action="store_true",
                   help="report where math-verify and the canonical normaliser disagree")
    e.add_argument("--out", default=None, help="output folder (default runs/eval/MODEL-TIME)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(fn=cmd_eval)

    c = subparsers.add_parser("compare", help="paired comparison of two 'urlvr eval' results (base vs trained)")
    c.add_argument("base", help="results.json of the base model (or its folder)")
    c.add_argument("trained", help="results.json of the trained model (or its folder)")
    c.add_argument("--force", action="store_true", help="compare even if settings differ (differences are printed)")
    c.add_argument("--out", default=None, help="also write the comparison as JSON here")
    c.set_defaults(fn=cmd_compare)
