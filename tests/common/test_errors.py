from common.errors import MAX_SHOWN_CHARS, shown


def test_a_short_value_is_quoted_whole() -> None:
    assert shown("docs") == "'docs'"


def test_a_long_value_is_cut_and_says_its_length() -> None:
    text = shown("x" * 10_000)
    assert text == "'" + "x" * MAX_SHOWN_CHARS + "'… (10000 characters)"


def test_non_printable_characters_are_not_echoed() -> None:
    assert shown("a\x00b\nc\x1b[31m") == "'a?b?c?[31m'"
