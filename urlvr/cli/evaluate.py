"""``urlvr eval``, ``urlvr compare`` and ``urlvr ttt`` over :mod:`urlvr.evaluation`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from urlvr.cli.train import parse_options
from urlvr.errors import UrlvrError

__all__ = ["EVAL_HELP", "add_eval", "run_eval", "add_compare", "run_compare", "add_ttt", "run_ttt",
           "format_results", "format_comparison", "format_ttt"]

EVAL_HELP = ("Sample n >= k completions per problem for each seed with pinned settings; report avg@k (mean ± std "
             "over seeds), unbiased pass@j for j <= n, maj@k over equivalence classes of parsed answers, greedy "
             "accuracy (--greedy), truncation and unparsable rates, the certified-majority metrics (--certify-eps), "
             "with 95% bootstrap CIs over problems. Writes results.json and samples.jsonl to --out. File benchmarks "
             "use --grader math unless told otherwise "
             "(pass --grader choice for lettered multiple choice such as GPQA).")


# ---- eval -----------------------------------------------------------------------------------------------

def add_eval(e: argparse.ArgumentParser) -> None:
    e.add_argument("--model", required=True, help="checkpoint or run folder, .gguf file, smollm2 (built in) or testbed:PRIOR[:TASK[:SIZE]]")
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
    e.add_argument("--chat", nargs="?", const="on", default="auto", choices=("auto", "on", "off"),
                   help="chat template: auto (the tokenizer's when it has one; default), on (--chat), off")
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
    e.add_argument("--grader-workers", type=int, default=2, help="math-verify worker processes (default 2)")
    e.add_argument("--grader-timeout", type=float, default=5.0, help="seconds per math-verify comparison (default 5)")
    e.add_argument("--device", default="auto")
    e.add_argument("--dtype", default="auto")
    e.add_argument("--cross-check", action="store_true",
                   help="report where math-verify and the canonical normaliser disagree")
    e.add_argument("--certify-eps", type=float, default=0.1,
                   help="level of the Martingale Majority Certificate over each problem's n samples: certified_rate, "
                        "votes_to_certify, certified_accuracy, mmc_maj_accuracy, mmc_vote_share (default 0.1; 0 = off)")
    e.add_argument("--out", default=None, help="output folder (default runs/eval/MODEL-TIME)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")


def run_eval(args) -> int:
    from urlvr.config import EvalConfig
    from urlvr.console import echo
    from urlvr.evaluation.harness import default_out_dir, evaluate, write_results

    cfg = EvalConfig(model=args.model, data=tuple(args.data), k=args.k, n=args.n, seeds=args.seeds,
                     max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                     template=args.template, system_prompt=args.system_prompt, chat=args.chat, greedy=args.greedy,
                     limit=args.limit, problems=args.problems, split=args.split, options=parse_options(args.option),
                     grader=args.grader, equivalence=args.equivalence, batch_size=args.batch_size,
                     grader_workers=args.grader_workers, grader_timeout=args.grader_timeout, device=args.device,
                     dtype=args.dtype, cross_check=args.cross_check, certify_eps=args.certify_eps)
    out = Path(args.out) if args.out else default_out_dir(cfg.model)
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)  # checked before any sampling
    if blocker is not None and not blocker.is_dir():
        raise UrlvrError(f"--out {out}: {blocker} is a file, not a folder; give a folder for results.json")
    if blocker is not None and not os.access(blocker, os.W_OK):
        raise UrlvrError(f"--out {out}: {blocker} is not writable; give a folder you can write to")
    results, samples = evaluate(cfg, progress=not args.quiet)
    write_results(out, results, samples)
    print(format_results(results))
    echo(f"wrote {out / 'results.json'} and {out / 'samples.jsonl'}")
    return 0


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


# ---- compare --------------------------------------------------------------------------------------------

def add_compare(c: argparse.ArgumentParser) -> None:
    c.add_argument("base", help="results.json of the base model (or its folder)")
    c.add_argument("trained", help="results.json of the trained model (or its folder)")
    c.add_argument("--force", action="store_true", help="compare even if settings differ (differences are printed)")
    c.add_argument("--out", default=None, help="also write the comparison as JSON here")


def run_compare(args) -> int:
    from urlvr.console import echo
    from urlvr.evaluation.compare import compare_results, settings_differences, transitions
    from urlvr.evaluation.harness import load_results
    from urlvr.io import write_json

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
    rows = compare_results(base, trained, **base["settings"]["bootstrap"])
    print(f"base: {base['model']['name']}  trained: {trained['model']['name']}  "
          "(paired over problems; 95% paired-bootstrap CI; two-sided sign-flip permutation p)")
    print(format_comparison(rows))
    moved = transitions(base, trained)
    if moved:
        print("\nper problem, by majority vote (solved: maj@k correct on at least half the seeds)")
        print(format_transitions(moved))
    if args.out:
        write_json(args.out, {"base": str(args.base), "trained": str(args.trained), "forced_differences": diffs,
                              "comparisons": rows, "transitions": moved})
    return 0


def format_comparison(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<16}{'metric':<18}{'base':>8}{'trained':>9}{'diff':>8}   {'95% CI':<18}{'p':>7}"]
    for r in rows:
        ci = f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        lines.append(f"{r['benchmark']:<16}{r['metric']:<18}{r['base']:>8.3f}{r['trained']:>9.3f}{r['diff']:>+8.3f}   "
                     f"{ci:<18}{r['p_value']:>7.4f}")
    return "\n".join(lines)


def format_transitions(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<16}{'metric':<10}{'problems':>9}{'kept':>7}{'lost':>7}{'gained':>8}{'never':>7}"]
    for r in rows:
        lines.append(f"{r['benchmark']:<16}{r['metric']:<10}{r['problems']:>9}{r['kept']:>7}{r['lost']:>7}"
                     f"{r['gained']:>8}{r['never']:>7}")
    return "\n".join(lines)


# ---- ttt ------------------------------------------------------------------------------------------------

def add_ttt(t: argparse.ArgumentParser) -> None:
    t.add_argument("config", nargs="?", help="YAML recipe with train_split: test (see recipes/ttt_*.yaml)")
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train_problems=64")
    t.add_argument("--k", type=int, default=8, help="samples per problem for avg@k / maj@k (default 8)")
    t.add_argument("--seeds", type=int, default=3, help="evaluation sampling seeds (default 3)")
    t.add_argument("--no-transfer", action="store_true", help="skip the held-out validation split")
    t.add_argument("--quiet", action="store_true")


def run_ttt(args) -> int:
    from urlvr.config import load_config
    from urlvr.console import echo
    from urlvr.evaluation.ttt import run_ttt as ttt

    if args.config is None:
        raise UrlvrError("give a recipe, e.g. 'urlvr ttt recipes/ttt_majority_vote.yaml'")
    cfg = load_config(args.config, args.overrides)
    result = ttt(cfg, k=args.k, seeds=args.seeds, transfer=not args.no_transfer, progress=not args.quiet)
    print(format_ttt(result))
    echo(f"wrote {Path(cfg.out_dir) / 'ttt.json'}; see it with 'urlvr report {cfg.out_dir}'")
    return 0


def format_ttt(result: dict) -> str:
    lines = [f"{'split':<12}{'metric':<10}{'base':>8}{'after':>8}{'diff':>8}   {'95% CI':<18}{'p':>7}"]
    for c in result["comparisons"]:
        ci = f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
        lines.append(f"{c['split']:<12}{c['metric']:<10}{c['base']:>8.3f}{c['trained']:>8.3f}{c['diff']:>+8.3f}   "
                     f"{ci:<18}{c['p_value']:>7.4f}")
    return "\n".join(lines)
