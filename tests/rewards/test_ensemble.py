"""Ensemble rewards on hand-made groups of answers (METHODS §3): majority, tie, answer-less, SRT, EMPO."""

import pytest

from rewards._groups import answers_group
from urlvr.errors import UrlvrError
from urlvr.rewards.ensemble import majority_vote, semantic_cluster, srt

CLEAR = ["2", "2", "2", "3"]
TIE = ["3", "2", None, None]  # 3 and 2 tie among parsable answers (3 first); 2 answer-less
NONE = [None, None, None, None]

# (answers, reward, options, expected rewards)
CASES = [
    (CLEAR, majority_vote, {}, [1, 1, 1, 0]),
    (CLEAR, srt, {}, [1, 1, 1, 0]),
    (CLEAR, srt, {"mode": "soft"}, [0.75, 0.75, 0.75, 0.25]),
    (CLEAR, semantic_cluster, {}, [0.75, 0.75, 0.75, 0.25]),
    (CLEAR, semantic_cluster, {"empty": "singleton"}, [0.75, 0.75, 0.75, 0.25]),
    (TIE, majority_vote, {}, [0, 0, 0, 0]),  # TTRL: the 2 answer-less vote together and win -> all 0
    (TIE, majority_vote, {"empty": "drop"}, [1, 0, 0, 0]),  # tie -> the answer seen first
    (TIE, srt, {}, [1, 0, 0, 0]),
    (TIE, srt, {"mode": "soft"}, [0.25, 0.25, 0, 0]),
    (TIE, semantic_cluster, {}, [0.25, 0.25, 0, 0]),  # trl: answer-less -> 0
    (TIE, semantic_cluster, {"empty": "singleton"}, [0.25, 0.25, 0.25, 0.25]),  # verl: own cluster
    (NONE, majority_vote, {}, [0, 0, 0, 0]),
    (NONE, srt, {}, [0, 0, 0, 0]),
    (NONE, srt, {"threshold": 0.25}, [None] * 4),
    (NONE, semantic_cluster, {}, [0, 0, 0, 0]),
    (NONE, semantic_cluster, {"empty": "singleton"}, [0.25] * 4),
    (["2", "2", "3", None], srt, {"threshold": 0.5}, [1, 1, 0, 0]),  # majority fraction 2/4 = 0.5: accepted
    (["2", "2", "3", None], srt, {"threshold": 0.6}, [None] * 4),  # below: the group leaves the loss
    (["2", "2", "3", None], srt, {"threshold": 0.6, "mode": "soft"}, [None] * 4),
    ([" 2", "2 ", "3", "3"], majority_vote, {}, [1, 1, 0, 0]),  # canonical key ignores whitespace
]


@pytest.mark.parametrize("answers,reward,options,expected", CASES,
                         ids=[f"{i}-{c[1].__name__}-{c[2]}" for i, c in enumerate(CASES)])
def test_hand_computed_rewards(answers, reward, options, expected):
    out = reward(answers_group(answers), **options)
    assert list(getattr(out, "scores", out)) == expected


def test_srt_logs_acceptance():
    assert srt(answers_group(CLEAR), threshold=0.9).components == {"accepted": [0.0] * 4}
    assert srt(answers_group(CLEAR), threshold=0.75).components == {"accepted": [1.0] * 4}


def test_math_equivalence_clusters_forms_of_one_number():
    g = answers_group(["\\frac{1}{2}", "0.5", "1/2", "3"], equivalence="math")
    assert semantic_cluster(g) == [0.75, 0.75, 0.75, 0.25]
    assert semantic_cluster(g, equivalence="canonical") == [0.25] * 4
    assert majority_vote(g) == [1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("reward,options,match", [
    (srt, {"mode": "medium"}, "srt mode"),
    (srt, {"threshold": 1.5}, "threshold"),
    (semantic_cluster, {"empty": "drop"}, "empty-answer rule"),
    (majority_vote, {"equivalence": "fuzzy"}, "equivalence"),
])
def test_bad_options(reward, options, match):
    with pytest.raises(UrlvrError, match=match):
        reward(answers_group(CLEAR), **options)
