"""What the collapse detector loses when the initial model's forward runs every ``kl_every`` steps only.

    python benchmarks/kl_every.py [--scenario NAME ...] [--seeds 3] [--every 1,2,5,10,20,0]

With ``kl_coef = 0`` the reference forward only feeds ``policy/kl_initial``, the detector's drift signal;
nothing that trains reads it, so a run's trajectory does not depend on ``kl_every``. This script
therefore trains each scenario of ``collapse_lead.py`` once with ``kl_every = 1`` (through the real
trainer) and *replays* the detector (:class:`urlvr.watch.detector.CollapseDetector`, the run's own
settings) over the logged rows with the KL kept only on the steps a given ``kl_every`` would measure
(steps 1, 1 + k, ...; ``0`` = never). The ``kl_every = 1`` replay must reproduce the online detector
exactly (checked). Per scenario and ``kl_every``: the firing step, the first flagged (peak) step, the
label-free best step, the lead over the true validation peak, and how many runs fire later than with
every-step KL and by how much.

The cost side (the share of a step the reference forward takes) is in ``step_vs_trl.py``'s profile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import yaml
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from urlvr.cli import quiet_libraries  # noqa: E402


def replay(rows: list[dict], cfg, every: int) -> dict:
    """The detector's events over ``rows`` with ``policy/kl_initial`` measured every ``every`` steps."""
    from urlvr.watch.detector import CollapseDetector

    det = CollapseDetector.from_config(cfg)
    fired = peak = None
    best = 0
    for r in rows:
        if r["step"] == 0:
            continue
        m = dict(r)
        if not every or (r["step"] - 1) % every:
            m.pop("policy/kl_initial", None)
        out = det.update(r["step"], m)
        best = out.get("diag/collapse_best_step", best)
        if out.get("diag/collapse_peak") and peak is None:
            peak = r["step"]
        if out.get("diag/collapse_fired") and fired is None:
            fired = r["step"]
    return {"fired": fired, "peak": peak, "best": best}


def main() -> int:
    import collapse_lead

    from urlvr.config import config_from_dict
    from urlvr.io import read_jsonl

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", action="append", choices=sorted(collapse_lead.SCENARIOS), help="default: all")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--every", default="1,2,5,10,20,0", help="kl_every values to replay (0 = never)")
    p.add_argument("--val-every", type=int, default=10)
    p.add_argument("--val-problems", type=int, default=100)
    p.add_argument("--out-dir", default="runs/kl_every")
    args = p.parse_args()
    quiet_libraries()
    everies = [int(x) for x in args.every.split(",")]
    out = Path(args.out_dir)
    table = []
    for name in args.scenario or collapse_lead.SCENARIOS:
        for seed in range(args.seeds):
            res = collapse_lead.run(name, seed, out, args.val_every, args.val_problems, kl_every=1)
            run_dir = out / f"{name}_seed{seed}"
            rows = read_jsonl(run_dir / "metrics.jsonl")
            cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
            online = next((r["step"] for r in rows if r.get("diag/collapse_fired")), None)
            by_k = {k: replay(rows, cfg, k) for k in everies}
            if 1 in by_k and by_k[1]["fired"] != online:
                raise SystemExit(f"replay with kl_every=1 fired at {by_k[1]['fired']}, the online detector at {online}")
            table.append({"scenario": name, "seed": seed, "peak_step": res["peak_step"], "val_peak": res["val_peak"],
                          "by_k": by_k})
    (out / "kl_every.json").write_text(json.dumps(table, indent=2))
    print("| scenario | seed | true peak | " + " | ".join(f"fired k={k or 'never'}" for k in everies) + " |")
    print("|---|---|---|" + "---|" * len(everies))
    for t in table:
        print(f"| {t['scenario']} | {t['seed']} | {t['peak_step']} | "
              + " | ".join(str(t["by_k"][k]["fired"] or "-") for k in everies) + " |")
    base = everies[0]
    print(f"\nper kl_every, against kl_every={base}: runs that fire later (or never), mean delay in steps, "
          "runs whose flagged peak or best step moved")
    for k in everies:
        delays, moved, lost = [], 0, 0
        for t in table:
            a, b = t["by_k"][base], t["by_k"][k]
            if a["fired"] is not None and b["fired"] is None:
                lost += 1
            elif a["fired"] is not None:
                delays.append(b["fired"] - a["fired"])
            moved += (a["peak"], a["best"]) != (b["peak"], b["best"])
        later = sum(d > 0 for d in delays)
        print(f"kl_every={k or 'never'}: fired later in {later}/{len(table)} runs, never fired in {lost} "
              f"(that fired with k={base}); mean delay {statistics.fmean(delays) if delays else 0:+.1f} steps "
              f"(max {max(delays, default=0)}); peak/best step moved in {moved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
