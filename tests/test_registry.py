"""The generic registry every plug-in family uses (polymodal.registry)."""

from __future__ import annotations

import pytest

from polymodal.errors import ModelError, SpecError
from polymodal.registry import Registry


def _registry() -> Registry:
    units: Registry = Registry("widget", config_key="model.widget", error=SpecError)

    @units.register("round", sides=0)
    class Round:
        def __init__(self, size: int, *, smooth: bool = True) -> None:
            self.size, self.smooth = size, smooth

    @units.register("square", sides=4)
    def square(*, size: int = 1) -> tuple[str, int]:
        return ("square", size)

    return units


def test_names_get_meta_and_create() -> None:
    units = _registry()
    assert units.names() == ["round", "square"] and "round" in units and len(units) == 2
    assert units.meta("square")["sides"] == 4
    assert units.create("square", size=3) == ("square", 3)
    built = units.create("round", 5, smooth=False)
    assert (built.size, built.smooth) == (5, False)


def test_unknown_name_lists_the_known_ones_and_the_config_key() -> None:
    with pytest.raises(
        SpecError,
        match=r"unknown widget 'oval'; known widgets: round, square\. "
        r"Set model\.widget",
    ):
        _registry().get("oval")


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(
        SpecError, match=r"widget 'round' has no option 'smoth'; it accepts: smooth"
    ):
        _registry().create("round", 5, smoth=True)


def test_a_taken_name_is_refused_but_re_registering_the_same_object_is_not() -> None:
    units = _registry()
    with pytest.raises(ValueError, match="already registered"):
        units.register("round")(object())
    same = units.get("square")
    assert units.register("square")(same) is same


def test_default_error_is_a_model_error() -> None:
    with pytest.raises(ModelError):
        Registry("thing").get("x")
