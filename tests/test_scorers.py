"""Reference-answer scorers, table-style: each row is (scorer, output, reference, expected score)."""
import pytest

from promptlab.scoring.scorers import ScorerError, first_number, normalize_text, parse_scorer, token_f1

TABLE = [
    # exact: only outer whitespace is forgiven
    ("exact", "Paris", "Paris", 1.0),
    ("exact", " Paris\n", "Paris", 1.0),
    ("exact", "paris", "Paris", 0.0),
    ("exact", None, "Paris", 0.0),
    # normalized: case, punctuation, spacing, Unicode forms
    ("normalized", "  PARIS. ", "Paris", 1.0),
    ("normalized", "Санкт-Петербург!", "санкт петербург", 1.0),
    ("normalized", "ｐａｒｉｓ", "paris", 1.0),  # full-width letters (NFKC)
    ("normalized", "Paris, France", "Paris", 0.0),
    # contains: whole words, after normalizing
    ("contains", "The capital is Paris, of course.", "paris", 1.0),
    ("contains", "Parisian food", "Paris", 0.0),
    ("contains", "Столица — Москва.", "москва", 1.0),
    ("contains", "anything", "", 0.0),
    # regex: the scorer's pattern, or the reference as the pattern
    ("regex:^\\d{3}-\\d{4}$", "555-1234", "ignored", 1.0),
    ("regex:^\\d{3}-\\d{4}$", "call 555-1234", "ignored", 0.0),
    ("regex", "order #A-1234 shipped", r"#A-\d+", 1.0),
    ("regex", "order shipped", r"#A-\d+", 0.0),
    # numeric: first number in the reply, absolute or relative tolerance, decimal commas, separators
    ("numeric", "The answer is 42.", "42", 1.0),
    ("numeric", "42.0001", "42", 0.0),
    ("numeric:0.01", "42.005", "42", 1.0),
    ("numeric:0.01", "42.02", "42", 0.0),
    ("numeric:5%", "about 1,040 units", "1000", 1.0),
    ("numeric:5%", "1,060", "1000", 0.0),
    ("numeric", "Ответ: 3,14", "3.14", 1.0),
    ("numeric", "1 234,5 руб.", "1234.5", 1.0),
    ("numeric", "−7", "-7", 1.0),
    ("numeric", "no idea", "7", 0.0),
    # token F1 (SQuAD-style)
    ("token_f1", "the Eiffel Tower", "Eiffel Tower", 0.8),
    ("token_f1", "Eiffel Tower", "Eiffel Tower", 1.0),
    ("token_f1", "Louvre", "Eiffel Tower", 0.0),
    # json: a field of the first JSON object in the reply (fenced or bare), compared normalized
    ("json:city", '{"city": "Paris", "country": "FR"}', "paris", 1.0),
    ("json:address.city", 'Sure!\n```json\n{"address": {"city": "Berlin"}}\n```', "Berlin", 1.0),
    ("json:address.city", '{"address": {"city": "Bonn"}}', "Berlin", 0.0),
    ("json:total", '{"total": 12.50}', "12.5", 1.0),
    ("json:items.0", '{"items": ["apple", "pear"]}', "Apple", 1.0),
    ("json:city", "Paris", "Paris", 0.0),  # not JSON at all
    ("json:city", '{"town": "Paris"}', "Paris", 0.0),  # no such field
    ("json:city", '{"city": "Paris"}', '{"city": "paris", "zip": "75001"}', 1.0),  # a JSON reference: same field
]


@pytest.mark.parametrize("spec, output, reference, expected", TABLE)
def test_scorer_table(spec, output, reference, expected):
    assert parse_scorer(spec).score(output, reference) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("spec, needle", [
    ("bleu", "unknown scorer"),
    ("numeric:abc", "not a number"),
    ("numeric:-1", "negative"),
    ("json", "needs the field"),
    ("regex:([", "not a valid regular expression"),
    ("exact:foo", "takes no argument"),
])
def test_bad_scorer_specs_say_what_to_write(spec, needle):
    with pytest.raises(ScorerError, match=needle):
        parse_scorer(spec)


def test_every_scorer_describes_itself_for_the_meta_prompt():
    for spec in ("exact", "normalized", "contains", "regex:^a", "regex", "numeric:0.5", "token_f1", "json:a.b"):
        scorer = parse_scorer(spec)
        assert scorer.spec == spec and scorer.describe().startswith("the reply")


def test_helpers():
    assert normalize_text("  Hello,   World! ") == "hello world"
    assert first_number("x = 2.5e3") == 2500.0 and first_number("1,234,567.5") == 1234567.5
    assert token_f1("", "") == 1.0 and token_f1("a", "") == 0.0


def test_a_bad_reference_pattern_is_a_clear_error():
    with pytest.raises(ScorerError, match="not a valid regular expression"):
        parse_scorer("regex").score("text", "([")
