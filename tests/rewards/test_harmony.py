"""Self-Harmony: the harmonic-mean label rule by hand (ties, no common answer, empty answers, smoothing),
the reward's wiring with scripted branch-R answers, and the reward on the tiny testbed model through the
real sampler (seeded, components present)."""

import pytest
import torch

from rewards._groups import answers_group, one_thread  # noqa: F401  (fixture)
from urlvr.errors import UrlvrError
from urlvr.loading import load_model
from urlvr.prompts import Renderer
from urlvr.rewards import get_reward
from urlvr.rewards.harmony import REFRAMER_PROMPT, cross_label, harmony_label, self_harmony
from urlvr.rollout import HFSampler
from urlvr.scoring import completions_from_batch
from urlvr.tasks import get_task
from urlvr.types import Group, SamplingSettings


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


# ---- the label rule -------------------------------------------------------------------------------

LABELS = [
    # (branch O, branch R, laplace, expected label)
    (["4", "4", "5", None], ["5", "4", "5", "5"], False, "5"),   # 4: 2·1/3 = .667, 5: 1·3/4 = .75
    (["4", "4", "4", "5"], ["4", "5", "5", "5"], False, "4"),   # 4: 3·1/4, 5: 1·3/4 tie, n 4 = 4: first in O
    (["5", "4", "4", "4"], ["4", "5", "5", "5"], False, "5"),   # the same tie, 5 appears first
    (["4", "4", "6", "6"], ["4", "4", "6", "6"], False, "4"),   # full tie: first appearance
    (["3", "3", "7", "7"], ["3", "7", "7", "7"], False, "7"),   # 3: 2·1/3 = .667, 7: 2·3/5 = 1.2
    (["2", "2", "2", "2"], ["2", "9", "9", "9"], False, "2"),   # 2: 4·1/5 = .8 > 9 absent from O
    (["1", "1", "2", "2"], ["2", "1", "1", "2"], False, "1"),   # 1 and 2: both 2·2/4 = 1, n 4: first
    (["4", "5"], ["6", "7"], False, None),                      # no common answer: no label
    (["4", "5"], ["6", "7"], True, "4"),                        # smoothed: every answer 2·1/3, first wins
    (["4", "4", "4"], ["5", "5", "5"], True, "4"),              # smoothed: 4·1/5 both, n equal, first
    (["4", "4", "4"], ["5", "5", "4"], True, "4"),              # smoothed: 4: 4·2/6 = 1.33, 5: 1·3/4
    (["4", "8", "8"], ["4", "4", "4"], False, "4"),             # 4: 1·3/4 = .75; 8 only in O
    (["8", "8", "8", "4"], ["4", "8"], True, "8"),              # smoothed: 8: 4·2/6 = 1.33, 4: 2·2/4 = 1
    ([None, None], [None, "4"], False, None),                   # empty answers never vote
    ([None, None], [None, None], True, None),                   # nothing to smooth
    ([], [], False, None),
]


@pytest.mark.parametrize("o, r, laplace, expected", LABELS)
def test_harmony_label_by_hand(o, r, laplace, expected):
    assert harmony_label(o, r, laplace) == expected


def test_harmonic_vote_is_not_a_pooled_majority():
    # pooled majority: 9 (4 votes, all in R) beats 3 (3 votes); only 3 is in both branches
    assert harmony_label(["3", "3", "1", "1"], ["3", "9", "9", "9"]) == "3"
    # balance wins over volume: 5 (2+2) beats 6 (3+1) although 6 has as many votes
    assert harmony_label(["6", "6", "6", "5", "5"], ["6", "5", "5"]) == "5"


@pytest.mark.parametrize("r, expected", [(["4", "5", "5"], "5"), (["4", "5"], "4"), ([None, None], None),
                                         ([None, "7", "3", "3", "7"], "7")])
def test_cross_label_is_branch_r_majority(r, expected):
    assert cross_label(r) == expected


# ---- the reward with scripted branch-R answers ----------------------------------------------------

class Scripted:
    """A sampler answering every branch-R prompt in turn with ``answers`` (records the calls)."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def generate(self, prompts, settings, seed):
        self.calls.append((list(prompts), settings, seed))
        texts = ["?" if a is None else f"STRATEGY: Reverse\nSOLUTION: \\boxed{{{a}}}" for a in self.answers[: len(prompts)]]

        class Batch:
            pass

        b = Batch()
        b.texts, b.mask = texts, torch.ones(len(texts), 5, dtype=torch.bool)
        return b


def test_reward_scores_branch_o_against_the_harmonic_label():
    g = answers_group(["4", "4", "5", None])
    sampler = Scripted(["5", "4", "5", "5"])
    out = self_harmony(g, sampler=sampler, settings=SamplingSettings(0.7, 0.9, 10))
    assert out.scores == [0.0, 0.0, 1.0, 0.0]  # label 5 (see LABELS), the answer-less completion never rewarded
    assert out.components["labelled"] == [1.0] * 4
    assert out.components["reframe_answered"] == [1.0] * 4 and out.components["reframe_agreement"] == [0.75] * 4
    assert out.components["reframe_tokens"] == [20.0] * 4 and all(s >= 0 for s in out.components["reframe_s"])
    prompts, settings, _ = sampler.calls[0]
    assert prompts == [REFRAMER_PROMPT + g.prompt] * 4  # the reframer text, then the rendered prompt
    assert (settings.temperature, settings.top_p, settings.max_new_tokens) == (0.7, 0.9, 10)


def test_no_common_answer_gives_no_label_and_all_zero():
    out = self_harmony(answers_group(["4", "4"]), sampler=Scripted(["6", "7"]))
    assert out.scores == [0.0, 0.0] and out.components["labelled"] == [0.0, 0.0]
    assert out.components["reframe_agreement"] == [0.0, 0.0]
    smoothed = self_harmony(answers_group(["4", "4"]), sampler=Scripted(["6", "7"]), laplace=True)
    assert smoothed.scores == [1.0, 1.0]  # 4: 3·1/4 beats 6, 7: 2·1/3


def test_cross_strategy_labels_by_branch_r_majority():
    out = self_harmony(answers_group(["4", "4", "5"]), sampler=Scripted(["5", "5", "4"]), strategy="cross")
    assert out.scores == [0.0, 0.0, 1.0]


def test_exact_matching_by_default_group_equivalence_as_an_option():
    g = answers_group(["1 0", "1 0", "3"])  # the arithmetic-style key strips spaces: "1 0" ≡ "10"
    exact = self_harmony(g, sampler=Scripted(["10", "10", "3"]))
    grouped = self_harmony(g, sampler=Scripted(["10", "10", "3"]), match="group")
    assert exact.scores == [0.0, 0.0, 1.0]  # only "3" is in both branches as a string
    assert grouped.scores == [1.0, 1.0, 0.0]  # "1 0" and "10" are one answer: 2·2/4 beats 1·1/2


def test_options_n_template_and_seed():
    g = answers_group(["4", "5"])
    sampler = Scripted(["4"] * 6)
    self_harmony(g, sampler=sampler, n=6, template="Q: {question} | {prompt}", seed=3)
    self_harmony(g, sampler=sampler, n=6, template="Q: {question} | {prompt}", seed=4)
    (p1, _, s1), (_, _, s2) = sampler.calls
    assert p1 == [f"Q: {g.problem.question} | {g.prompt}"] * 6 and s1 != s2
    self_harmony(Group(g.problem, g.prompt, g.completions[::-1], g.rules),
                 sampler=sampler, n=6, template="Q: {question} | {prompt}", seed=3)
    assert sampler.calls[-1][2] == s1  # seeded from the sorted texts: completion order does not matter


@pytest.mark.parametrize("kw, message", [
    (dict(sampler=None), "needs the policy"),
    (dict(strategy="majority"), "unknown self_harmony strategy"),
    (dict(match="fuzzy"), "unknown self_harmony match"),
    (dict(template="solve it"), "neither {prompt} nor {question}"),
    (dict(template="{answer} {prompt}"), "bad reframe template"),
    (dict(n=0), "n \\(branch-R completions\\)"),
])
def test_bad_options_are_one_clear_line(kw, message):
    kw = {"sampler": Scripted(["4"]), **kw}
    with pytest.raises(UrlvrError, match=message):
        self_harmony(answers_group(["4"]), **kw)


def test_registered_as_a_policy_querying_ensemble_reward():
    spec = get_reward("self_harmony")
    assert (spec.family, spec.needs_group, spec.needs_policy, spec.needs_gold) == ("ensemble", True, True, False)


# ---- the reward on the tiny testbed model, through the real sampler ---------------------------------

class Recording:
    """The real sampler, keeping the texts of every batch it returns."""

    def __init__(self, sampler):
        self.sampler, self.texts = sampler, []

    def generate(self, prompts, settings, seed):
        batch = self.sampler.generate(prompts, settings, seed=seed)
        self.texts.append(list(batch.texts))
        return batch


def test_reward_on_the_tiny_model_is_seeded_and_reports_its_cost(tiny_model):
    model, tok = load_model(tiny_model, "cpu")
    sampler = HFSampler(model, tok)
    task = get_task("arithmetic", digits=1, ops="+")
    rules = task.rules()
    settings = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=8)
    render = Renderer(task.prompt, tok, "auto", None)
    groups = []
    for e in task.examples("train", 3, seed=0):
        prompt = render(e.problem)
        batch = sampler.generate([prompt] * 6, settings, seed=[11] * 6)
        groups.append(Group(e.problem, prompt, tuple(completions_from_batch(batch, rules)), rules))
    rec = Recording(sampler)
    first = [self_harmony(g, sampler=rec, settings=settings) for g in groups]
    again = [self_harmony(g, sampler=rec, settings=settings) for g in groups]
    deterministic = ("labelled", "reframe_answered", "reframe_agreement", "reframe_tokens")
    for a, b in zip(first, again):
        assert a.scores == b.scores and all(a.components[k] == b.components[k] for k in deterministic)
        assert set(a.components) == {*deterministic, "reframe_s"}
        assert set(a.scores) <= {0.0, 1.0} and a.components["reframe_tokens"][0] > 0
        assert a.components["reframe_s"][0] > 0
    assert rec.texts[:3] == rec.texts[3:]  # the same reframings on the second call
    assert len(rec.texts[0]) == 6 and len(set(rec.texts[0])) > 1  # one seed, consecutive streams: not copies
    other = self_harmony(groups[0], sampler=rec, settings=settings, seed=1)
    assert rec.texts[-1] != rec.texts[0]  # another seed option, other reframings
    assert set(other.scores) <= {0.0, 1.0}
    # the reward is 1 exactly for branch-O answers equal to the label computed from both branches
    for g, out, texts in zip(groups, first, rec.texts):
        label = harmony_label([a if a and a.strip() else None for a in g.answers],
                              [a if a and a.strip() else None for a in map(rules.extract, texts)])
        assert out.scores == [float(label is not None and a == label) for a in g.answers]
