import pytest

from common.flags import as_flag


@pytest.mark.parametrize("value", [True, 1, "true", "True", "TRUE", "yes", "on", "1", " true "])
def test_true_spellings(value):
    assert as_flag(value) is True


@pytest.mark.parametrize("value", [False, 0, "false", "False", "no", "off", "0"])
def test_false_spellings(value):
    assert as_flag(value) is False


@pytest.mark.parametrize("value", ["maybe", "", 2, None, [True]])
def test_anything_else_is_an_error_naming_the_key(value):
    with pytest.raises(ValueError, match="--resume must be true or false"):
        as_flag(value, "resume")
