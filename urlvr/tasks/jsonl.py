r"""``jsonl``: problems loaded from a benchmark file (MATH-500, AIME, AMC, GPQA...) in any common format.

Formats, by path: one object per line (``.jsonl``), a JSON list of objects (``.json``), a Parquet file
(``.parquet``: the format of verl and TTRL) or a folder written by ``datasets.Dataset.save_to_disk``.
Fields are named by options: ``question_field`` (default ``prompt``), ``answer_field`` (``answer``; None
for an unlabelled file) and ``id_field`` (``id``; a row without it gets its 0-based row index). A field
may be a dotted path into nested records (verl's ``reward_model.ground_truth``), and a question that is a
chat conversation (a list of ``{"role", "content"}`` messages, verl's ``prompt``) reads as the content of
its last user message. A question longer than ``max_question_chars`` (100,000) is refused. A malformed line
or a missing field raises a :class:`~urlvr.errors.UrlvrError`
naming the file, the row and the option to set.

A benchmark file has no splits: every split returns the same rows, in file order, and the seed is
ignored (``examples(split, n)`` is the first ``n`` rows; ``limit`` caps the file).

Graders (``grader`` option):

- ``math``: the last ``\boxed{}``; gold check = math-verify equivalence (a
  :class:`urlvr.grading.Grader`, batched per step); voting key = :func:`urlvr.grading.canonical_answer`.
- ``choice``: a letter A-J, from the last ``\boxed{}`` (``C``, ``(C)``, ``\text{C}``, ``C. text``) or,
  without a box, from the last ``answer is (C)`` / ``Answer: C``; compared as letters.
- ``exact``: the last ``\boxed{}``, compared as text without whitespace.

The default template appends an instruction to the question (the files carry none); the ``choice``
grader asks for the letter.

>>> choice_letter("so the answer is \\boxed{\\text{(B)}}"), choice_letter("The answer is (C)."), choice_letter("42")
('B', 'C', None)
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from urlvr.errors import UrlvrError
from urlvr.answers import extract_boxed, strip_spaces
from urlvr.grading import canonical_answer, shared_grader
from urlvr.io import read_json, read_jsonl
from urlvr.tasks.base import Example, Problem, Task, check_template, register_task

__all__ = ["FileTask", "choice_letter", "choice_key", "GRADERS"]

GRADERS = ("math", "choice", "exact")
MATH_TEMPLATE = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n"
CHOICE_TEMPLATE = (
    "{question}\nPlease reason step by step, and put the letter of your final answer within \\boxed{{}}.\n"
)

_LETTER = re.compile(r"\(?([A-J])\)?(?:[.:)]\s*.*)?", re.S)
_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
_ANSWER_IS = re.compile(r"(?i:answer)(?:\s+is)?\s*:?\s*\$?\s*\(?([A-J])\)?(?![A-Za-z])")


def choice_letter(text: str | None) -> str | None:
    r"""The multiple-choice letter a completion states, or None.

    The last ``\boxed{}`` decides when present (its content must be a letter, optionally
    ``(C)``, ``\text{C}`` or ``C. the option text``); otherwise the last ``answer is C`` /
    ``Answer: (C)`` phrase. Lower-case letters are not read (GPQA options contain a)..d) labels).
    """
    if text is None:
        return None
    boxed = extract_boxed(text)
    if boxed is not None:
        inner = _WRAPPER.sub(r"\1", boxed).strip().strip("$").strip()
        m = _LETTER.fullmatch(inner)
        return m[1] if m else None
    hits = _ANSWER_IS.findall(text)
    return hits[-1] if hits else None


def choice_key(answer: str) -> str:
    """Voting key of a multiple-choice answer: its letter, else the text without whitespace."""
    return choice_letter(f"\\boxed{{{answer}}}") or "".join(answer.split())


@register_task("jsonl")
class FileTask(Task):
    """Benchmark problems from a JSON/JSONL file (MATH-500, AIME, AMC, GPQA); see the module docstring."""

    def __init__(self, path: str, question_field: str = "prompt", answer_field: str | None = "answer",
                 id_field: str = "id", template: str | None = None, grader: str = "math", limit: int | None = None,
                 max_question_chars: int = 100_000):
        if grader not in GRADERS:
            raise UrlvrError(f"jsonl: unknown grader {grader!r}; choose one of {', '.join(GRADERS)}")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise UrlvrError(f"jsonl: limit must be a positive integer or None, got {limit!r}")
        self.path, self.grader = Path(path), grader
        self.question_field, self.answer_field, self.id_field = question_field, answer_field, id_field
        self.max_question_chars = max_question_chars
        """A longer question is refused (a broken row, not a prompt: it would be tokenised and sampled as is)."""
        self.template = check_template(template or (CHOICE_TEMPLATE if grader == "choice" else MATH_TEMPLATE), "jsonl: template")
        self.rows = self._load()[:limit]

    def __len__(self) -> int:
        return len(self.rows)

    # ---- problems -----------------------------------------------------------------------------
    def generate(self, split: str, n: int, rng: random.Random) -> list[Example]:
        """The first ``n`` rows in file order (split and seed ignored: a benchmark has one split)."""
        if n > len(self.rows):
            raise UrlvrError(f"jsonl: {self.path} has {len(self.rows)} problems; ask for at most {len(self.rows)}")
        return self.rows[:n]

    def _load(self) -> list[Example]:
        records, where = self._read()
        examples, ids = [], {}
        for index, (row, loc) in enumerate(zip(records, where)):
            pid = _lookup(row, self.id_field)
            pid = str(index) if pid is None or isinstance(pid, (dict, list)) else str(pid)
            if pid in ids:
                raise UrlvrError(f"{self.path}:{loc}: duplicate id {pid!r} (also at {ids[pid]}); "
                                 "make ids unique or set id_field to another field")
            ids[pid] = loc
            question = self._field(row, self.question_field, "question_field", loc)
            if len(question) > self.max_question_chars:
                raise UrlvrError(f"{self.path}:{loc}: the question has {len(question):,} characters, more than "
                                 f"max_question_chars={self.max_question_chars:,}; fix the row or raise the option")
            answer = None if self.answer_field is None else self._field(row, self.answer_field, "answer_field", loc)
            examples.append(Example(Problem(id=pid, question=question), answer))
        if not examples:
            raise UrlvrError(f"{self.path}: no problems in the file")
        return examples

    def _read(self) -> tuple[list[dict], list[str]]:
        """Rows and their locations (``line N`` for JSONL, ``item N`` for a JSON list, ``row N`` for tables)."""
        if not self.path.exists():
            raise UrlvrError(f"jsonl: {self.path} not found; check the path")
        if self.path.is_dir() or self.path.suffix == ".parquet":
            rows = _read_table(self.path)
            return rows, [f"row {i}" for i in range(len(rows))]
        if self.path.suffix == ".json":
            data = read_json(self.path)
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise UrlvrError(f"{self.path}: expected a JSON list of objects (or use a .jsonl file)")
            return data, [f"item {i}" for i in range(len(data))]
        rows = read_jsonl(self.path)
        with open(self.path, encoding="utf-8") as f:  # read_jsonl skips blank lines: recover numbers
            lines = [str(i) for i, line in enumerate(f, 1) if line.strip()]
        return rows, lines

    def _field(self, row: dict[str, Any], name: str, option: str, loc: str) -> str:
        value = _lookup(row, name)
        if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
            users = [m for m in value if m.get("role", "user") == "user"]
            value = (users or value)[-1]["content"]  # a chat conversation: its last user turn
        if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], (dict, list)):
            value = value[0]  # a one-element list of answers
        if value is None or isinstance(value, (dict, list)):
            fields = ", ".join(sorted(row))
            raise UrlvrError(f"{self.path}:{loc}: missing field {name!r} (fields: {fields}); "
                             f"set the task option {option} to the field that holds it")
        return str(value)

    # ---- answers ------------------------------------------------------------------------------
    def answer_functions(self) -> dict:
        if self.grader == "choice":
            return {"extract": choice_letter, "canonical": choice_key, "verify": None}
        return {"extract": extract_boxed, "canonical": canonical_answer if self.grader == "math" else strip_spaces,
                "verify": None}

    def check(self, answer: str | None, gold: str) -> bool:
        """Gold check by the chosen grader (math-verify for ``math``)."""
        return self.check_many([answer], [gold])[0]

    def check_many(self, answers, golds, grader=None) -> list[bool]:
        """Gold checks of a batch; ``math``: one batched call to ``grader`` (default: the shared one)."""
        if self.grader != "math":
            return [g is not None and a is not None and self.canonical(a) == self.canonical(g)
                    for a, g in zip(answers, golds)]
        grader = grader or shared_grader()
        todo = [i for i, (a, g) in enumerate(zip(answers, golds)) if a is not None and g is not None]
        out = [False] * len(answers)
        for i, ok in zip(todo, grader.equivalent_many([(golds[i], answers[i]) for i in todo])):
            out[i] = bool(ok)
        return out

    def near_miss(self, example: Example, rng: random.Random) -> str:
        if self.grader == "choice":
            gold = self.canonical(example.answer or "A")
            return rng.choice([c for c in "ABCD" if c != gold])
        return super().near_miss(example, rng)


def _lookup(row: dict[str, Any], name: str) -> Any:
    """``row[name]``, following a dotted path into nested records (None when absent)."""
    value: Any = row
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _read_table(path: Path) -> list[dict]:
    """Rows of a Parquet file or a ``save_to_disk`` folder as plain dicts (one line on a bad file)."""
    try:
        if path.is_dir():
            from datasets import load_from_disk

            data = load_from_disk(str(path))
            if hasattr(data, "keys") and not hasattr(data, "to_list"):  # a DatasetDict: one split must be chosen
                splits = list(data.keys())
                if len(splits) != 1:
                    raise UrlvrError(f"jsonl: {path} holds the splits {', '.join(splits)}; give the folder of one "
                                     f"split, e.g. {path / splits[0]}")
                data = data[splits[0]]
            return data.to_list()
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except UrlvrError:
        raise
    except Exception as e:  # noqa: BLE001  (any reader failure is a bad file)
        kind = "a datasets folder (save_to_disk)" if path.is_dir() else "a Parquet file"
        raise UrlvrError(f"jsonl: {path} is not {kind} that can be read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160]})") from None
