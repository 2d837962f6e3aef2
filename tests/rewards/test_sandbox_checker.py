"""What the checker accepts: honest solutions keep their reward although tests run on plain values.

Each row is (case, code, tests, tests that pass); see the module docstring of urlvr.rewards.sandbox
for the rules (plain values cross, everything else is a handle never compared by its own ``==``).
"""

import pytest

from urlvr.rewards.sandbox import Sandbox

STACK = ("class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n"
         "        self.items.append(x)\n    def pop(self):\n        return self.items.pop()\n"
         "    def __len__(self):\n        return len(self.items)\n    def __str__(self):\n"
         "        return f'Stack{self.items}'\n")

CASES = [
    ("plain function", "def f(x):\n    return 2 * x\n", ["assert f(2) == 4", "assert f(2) != 5"], 2),
    ("every plain type round-trips",
     "def f():\n    return (1, 2.5, 'a', b'b', bytearray(b'c'), None, True, 3j, [1], {'k': (2,)}, {1, 2},"
     " frozenset({3}), 10 ** 5000, -2 ** 70)\n",
     ["assert f() == (1, 2.5, 'a', b'b', bytearray(b'c'), None, True, 3j, [1], {'k': (2,)}, {1, 2}, frozenset({3}),"
      " 10 ** 5000, -2 ** 70)", "assert type(f()[0]) is int and type(f()[6]) is bool"], 2),
    ("non-finite floats", "def f():\n    return [float('nan'), float('inf')]\n",
     ["import math\nassert math.isnan(f()[0]) and f()[1] == math.inf"], 1),
    ("arithmetic on results in the test", "def f(x):\n    return x / 3\n",
     ["assert abs(f(1) - 0.3333) < 1e-3", "import math\nassert math.isclose(f(3), 1.0)"], 2),
    ("a class with methods, len and str", STACK,
     ["s = Stack()\ns.push(1)\ns.push(2)\nassert s.pop() == 2\nassert len(s) == 1\nassert str(s) == 'Stack[1]'",
      "s = Stack()\nassert not s.items\ns.push(3)\nassert s.items == [3]"], 2),
    ("in-place mutation of an argument", "def sort_in_place(a):\n    a.sort()\n",
     ["lst = [3, 1, 2]\nsort_in_place(lst)\nassert lst == [1, 2, 3]"], 1),
    ("callbacks from the test", "def apply(fn, x):\n    return fn(x)\ndef by(items, key):\n"
     "    return sorted(items, key=key)\n",
     ["assert apply(lambda v: v + 1, 2) == 3", "assert by(['bb', 'a'], key=len) == ['a', 'bb']"], 2),
    ("expected exceptions", "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n",
     ["try:\n    f(-1)\nexcept ValueError as e:\n    assert 'negative' in str(e)\nelse:\n    raise AssertionError",
      "try:\n    f(-1)\nexcept TypeError:\n    pass"], 1),
    ("a custom exception is an Exception", "class Oops(Exception):\n    pass\ndef f():\n    raise Oops('x')\n",
     ["try:\n    f()\nexcept Exception as e:\n    assert 'Oops' in str(e)\nelse:\n    raise AssertionError"], 1),
    ("generators and membership", "def gen(n):\n    yield from range(n)\n",
     ["assert list(gen(3)) == [0, 1, 2]", "assert 2 in gen(5)", "assert 7 not in gen(5)"], 3),
    ("globals and from-import", "LIMIT = 5\ndef f():\n    return LIMIT\n",
     ["assert LIMIT == 5", "from solution import f\nassert f() == 5", "import solution\nassert solution.LIMIT == 5"], 3),
    ("helpers defined by an earlier test", "def f(x):\n    return x + 1\n",
     ["def check(v):\n    assert f(v) == v + 1", "check(3)\ncheck(4)"], 2),
    ("a loop of asserts", "def f(x):\n    return x * x\n", ["for i in range(20):\n    assert f(i) == i * i"], 1),
    ("stdout of the code is not the channel", "print('hello')\ndef f():\n    print('{\"ok\": 1}')\n    return 2\n",
     ["assert f() == 2"], 1),
    ("a test's own print cannot garble the results", "def f():\n    return 1\n",
     ["print('x', end='')\nassert f() == 1", "import sys\nsys.stdout.write('y')\nassert f() == 1"], 2),
    ("a missing name is a NameError", "def g():\n    return 1\n", ["assert f() == 1", "assert g() == 1"], 1),
    ("instances never compare by their own ==",
     "class P:\n    def __init__(self, x):\n        self.x = x\n    def __eq__(self, o):\n        return self.x == o.x\n"
     "    __hash__ = object.__hash__\n",
     ["assert P(1) == P(1)", "assert P(1).x == P(1).x", "p = P(2)\nassert p == p"], 2),
    ("a value too large for one reply", "def f():\n    return 'x' * (16 << 20)\n", ["assert len(f()) > 0"], 0),
    ("a value nested deeper than 100 levels",
     "def f():\n    v = []\n    for _ in range(200):\n        v = [v]\n    return v\n", ["assert f()"], 0),
]


@pytest.mark.parametrize("case,code,tests,passed", CASES, ids=[c[0] for c in CASES])
def test_checker_semantics(case, code, tests, passed):
    r = Sandbox(timeout_s=10.0).run(code, tests)
    assert r.passed == passed, (case, r)


def test_numpy_scalars_become_python_numbers():
    pytest.importorskip("numpy")
    r = Sandbox(timeout_s=10.0).run(
        "import numpy as np\ndef f():\n    return np.int64(3)\ndef g():\n    return np.arange(3)\n",
        ["assert f() == 3", "assert g().tolist() == [0, 1, 2]", "assert g() == [0, 1, 2]"])
    assert (r.passed, r.failures) == (2, ("test 2: AssertionError",)), r
