import pytest

from recipelib.errors import ConfigError
from recipelib.names import check_name, release_name, slug


def test_release_is_user_and_model():
    assert release_name("meta-llama/Llama-3.1-405B", user="alice") == "alice-llama-3-1-405b"


def test_derived_names_are_valid_even_for_awkward_user_names(monkeypatch):
    monkeypatch.setenv("USER", "Jane.Doe@EXAMPLE")
    name = release_name("meta-llama/Llama-3.1-405B")
    assert name == "jane-doe-example-llama-3-1-405b"
    check_name(name, "release")


def test_long_names_are_cut_to_63_stably_and_distinctly():
    a = release_name("org/" + "x" * 80 + "-a", user="bob")
    b = release_name("org/" + "x" * 80 + "-b", user="bob")
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert a == release_name("org/" + "x" * 80 + "-a", user="bob")
    check_name(a, "release")


@pytest.mark.parametrize("bad", ["Alice", "my_release", "-x", "x-", "a" * 64, "a.b", "abc\n"])
def test_names_the_user_chose_are_checked_not_changed(bad):
    with pytest.raises(ConfigError) as e:
        release_name("a/b", release=bad)
    assert e.value.field == "release"


def test_a_user_name_the_user_chose_is_checked():
    with pytest.raises(ConfigError) as e:
        release_name("a/b", user="Jane Doe")
    assert e.value.field == "user"
    assert "jane-doe" in str(e.value)  # the message suggests a valid one


def test_slug():
    assert slug("Llama 3.1 -- 405B!") == "llama-3-1-405b"
    assert slug("___") == "x"
