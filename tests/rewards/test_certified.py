"""The SNR reward of certified self-consistency on hand-made groups (ties, answer-less, the guard)."""

import pytest

from rewards._groups import answers_group
from urlvr.errors import UrlvrError
from urlvr.rewards.certified import snr, snr_value


def S(n1, n2, n):  # the formula, written out
    return 0.0 if n1 + n2 == 0 else (n1 - n2) ** 2 / (n * (n1 + n2))


# (answers, options, expected rewards)
CASES = [
    # N1 = 2 ("2"), N2 = 1 ("3"), n = 4: SNR = 1/12; a "2" leaves (1, 1, 3) -> 0; the "3" leaves (2, 0, 3) -> 4/6
    (["2", "2", "3", None], {}, [1 / 12, 1 / 12, 1 / 12 - 4 / 6, -10.0]),
    # an "other" answer only shrinks n: (3, 1, 5) vs (3, 1, 4)
    (["2", "2", "2", "3", "5"], {}, [S(3, 1, 5) - S(2, 1, 4)] * 3 + [S(3, 1, 5) - S(3, 0, 4), S(3, 1, 5) - S(3, 1, 4)]),
    # unanimous: (4, 0, 4) = 1 vs (3, 0, 3) = 1 -> 0 each
    (["7", "7", "7", "7"], {}, [0.0] * 4),
    # tie for N1/N2 by first occurrence ("3" is N1): equal by symmetry, (1 − 2)² = (2 − 1)²
    (["3", "2", "3", "2"], {}, [0.0 - S(1, 2, 3)] * 4),
    # three tied clusters: the third seen is "other" (order-dependent by the first-occurrence rule)
    (["a", "b", "c"], {}, [0.0 - S(0, 1, 2), 0.0 - S(1, 0, 2), 0.0]),
    # guard: the only answer removed leaves N1 + N2 = 0 -> SNR = 0 (the source divides by zero)
    (["4", None, None], {}, [S(1, 0, 3) - 0.0, -10.0, -10.0]),
    ([None, None], {"no_answer": -1.0}, [-1.0, -1.0]),
    (["4"], {}, [1.0]),  # n = 1: SNR(1, 0, 1) = 1, without it 0
]


@pytest.mark.parametrize("answers, options, expected", CASES)
def test_hand_computed_snr_rewards(answers, options, expected):
    out = snr(answers_group(answers), **options)
    assert out.scores == pytest.approx(expected)
    assert len(set(out.components["snr"])) == 1


def test_snr_value_and_guard():
    assert snr_value(3, 1, 4) == 0.25 and snr_value(0, 0, 5) == 0.0 and snr_value(2, 2, 4) == 0.0


def test_snr_follows_the_group_equivalence():
    g = answers_group(["1/2", "0.5", "2"], canonical=lambda a: {"0.5": "1/2"}.get(a, a))
    assert snr(g).scores == pytest.approx([S(2, 1, 3) - S(1, 1, 2)] * 2 + [S(2, 1, 3) - S(2, 0, 2)])


def test_bad_no_answer_is_one_line():
    with pytest.raises(UrlvrError, match="no_answer must be a finite number"):
        snr(answers_group(["1"]), no_answer=float("nan"))
