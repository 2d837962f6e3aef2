"""External rewards: the programmatic verifier, self-verification and code tests (METHODS §4)."""

import pytest

from rewards._groups import FakeSampler, answers_group, completion, group
from urlvr.errors import UrlvrError
from urlvr.rewards import external
from urlvr.rewards.external import code_tests, guarded, parse_verdict, self_verify, verifier
from urlvr.rewards.sandbox import SandboxError
from urlvr.rollout import SamplingSettings
from urlvr.tasks import get_task
from urlvr.tasks.base import Problem

COUNTDOWN = Problem("24 from 3 5 8", "24 from 3 5 8", data={"numbers": [3, 5, 8], "target": 24})
LINEAR = Problem("3x+5=20", "3x+5=20", data={"a": 3, "b": 5, "c": 20})


@pytest.mark.parametrize("task,problem,answer,expected", [
    ("countdown", COUNTDOWN, "3*8", 1.0),
    ("countdown", COUNTDOWN, "8 \\times 3 = 24", 1.0),  # many correct answers
    ("countdown", COUNTDOWN, "(8-5)*8", 0.0),  # 8 reused
    ("countdown", COUNTDOWN, "3*5+9", 0.0),  # 9 not given
    ("countdown", COUNTDOWN, "3*8+", 0.0),  # not an expression
    ("countdown", COUNTDOWN, "__import__('os')", 0.0),  # never evaluated as code
    ("countdown", COUNTDOWN, None, 0.0),  # no answer
    ("linear", LINEAR, "5", 1.0),
    ("linear", LINEAR, "x = 5", 1.0),
    ("linear", LINEAR, "\\frac{15}{3}", 1.0),
    ("linear", LINEAR, "6", 0.0),  # substitution: 3*6+5 = 23 != 20
    ("linear", LINEAR, "five", 0.0),
])
def test_verifier_checks_the_problem_not_a_stored_answer(task, problem, answer, expected):
    g = answers_group([answer], problem=problem, verify=get_task(task).rules().verify)
    assert verifier(g) == [expected]


def test_verifier_on_a_task_without_one_raises_at_the_first_call():
    g = answers_group(["2"], verify=get_task("arithmetic").rules().verify)
    with pytest.raises(UrlvrError, match="no programmatic verifier"):
        verifier(g)


def test_one_failing_completion_gets_none_and_the_others_keep_their_scores():
    def flaky(problem, answer):
        if answer == "boom":
            raise RuntimeError("verifier crashed")
        return answer == "5"

    assert verifier(answers_group(["5", "boom", "6"], verify=flaky)) == [1.0, None, 0.0]
    assert guarded(lambda c: 1 / 0)(completion("x")) is None
    with pytest.raises(UrlvrError):
        guarded(lambda c: (_ for _ in ()).throw(UrlvrError("config")))(completion("x"))


# ---- self-verification ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,verdict", [
    ("\\boxed{True}", True),
    ("\\boxed{false}", False),
    ("\\boxed{\\text{True}}", True),
    ("\\boxed{ yes. }", True),
    ("It is correct, so \\boxed{True}", True),
    ("The answer is incorrect.", False),  # word fallback: 'incorrect' is not 'correct'
    ("True... no wait, FALSE", False),  # the last verdict word wins
    ("\\boxed{maybe} but true", True),  # unreadable box: fall back to words
    ("Correct!", True),
    ("NO", False),
    ("\\boxed{42}", None),
    ("", None),
    ("untrue notable", None),  # whole words only
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) is verdict


def judge(prompt: str) -> str:
    """A policy that approves answer 2, rejects 3 and babbles about anything else."""
    return "\\boxed{True}" if "\\boxed{2}" in prompt else "\\boxed{False}" if "\\boxed{3}" in prompt else "hmm"


def test_self_verify_batches_one_call_per_group_at_half_temperature():
    sampler = FakeSampler(judge)
    g = answers_group(["2", "3", None, "2"])
    out = self_verify(g, sampler=sampler, settings=SamplingSettings(max_new_tokens=12))
    assert out.scores == [1.0, 0.0, 0.0, 1.0]  # unparsable verdict -> 0
    assert out.components["judge_parsed"] == [1.0, 1.0, 0.0, 1.0]
    (prompts, settings, seed), = sampler.calls
    assert len(prompts) == 3  # identical completions share one judgement
    assert settings.temperature == 0.5 and settings.max_new_tokens == 12
    assert all(p.startswith(g.prompt) and "\\boxed{True} or \\boxed{False}" in p for p in prompts)
    self_verify(answers_group(["2", "3", None, "2"][::-1]), sampler=sampler, settings=None)
    assert sampler.calls[1][2] == seed  # seeded by problem id + completion texts, not their order


def test_self_verify_template_and_errors():
    sampler = FakeSampler(lambda p: "\\boxed{True}")
    self_verify(answers_group(["2"]), sampler=sampler, template="{question} = {answer}? ")
    assert sampler.calls[0][0] == ["1+1 = 2? "]
    with pytest.raises(UrlvrError, match="judge template"):
        self_verify(answers_group(["2"]), sampler=sampler, template="{solution}")
    with pytest.raises(UrlvrError, match="needs the policy"):
        self_verify(answers_group(["2"]))


# ---- code tests ----------------------------------------------------------------------------------

CODE = Problem("double", "Write double(x).", data={"tests": ["assert double(2) == 4", "assert double(-1) == -2"]})


def code_group(*texts):
    return group([completion(t) for t in texts], problem=CODE)


def test_code_tests_scores_the_fraction_of_tests_passed():
    right = "Here you go:\n```python\ndef double(x):\n    return 2 * x\n```"
    half = "def double(x):\n    return 4 if x == 2 else 0"
    hangs = "```python\ndef double(x):\n    while True:\n        pass\n```"
    assert code_tests(code_group(right, half, hangs, "not code"), timeout_s=1.5) == [1.0, 0.5, 0.0, 0.0]


def test_code_tests_sandbox_failure_is_none_not_zero(monkeypatch):
    real = external.Sandbox.run

    def broken(self, code, tests):
        if "broken" in code:
            raise SandboxError("interpreter did not start")
        return real(self, code, tests)

    monkeypatch.setattr(external.Sandbox, "run", broken)
    ok = "def double(x): return 2 * x"
    assert code_tests(code_group(ok, ok + "  # broken")) == [1.0, None]


def test_code_tests_needs_tests_and_a_valid_network_mode():
    with pytest.raises(UrlvrError, match="no tests"):
        code_tests(answers_group(["2"]))
    with pytest.raises(UrlvrError, match="network mode"):
        code_tests(code_group("pass"), network="wifi")
