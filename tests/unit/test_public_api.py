"""The public face: pinned names, and the exception tree exactly as drawn in errors.py."""

from __future__ import annotations

import re

import pytest

import pushtrio
from pushtrio.contract import errors

PARENTS = {
    "PushtrioError": "Exception",
    "ConfigError": "PushtrioError",
    "InvalidNotification": "PushtrioError",
    "NotificationTooLarge": "InvalidNotification",
    "BackendError": "PushtrioError",
    "BrokerUnavailable": "BackendError",
    "BackendMisconfigured": "BackendError",
    "ProviderError": "PushtrioError",
    "TransientProviderError": "ProviderError",
    "PermanentProviderError": "ProviderError",
}


def test_errors_all_is_pinned() -> None:
    assert errors.__all__ == [
        "BackendError",
        "BackendMisconfigured",
        "BrokerUnavailable",
        "ConfigError",
        "InvalidNotification",
        "NotificationTooLarge",
        "PermanentProviderError",
        "ProviderError",
        "PushtrioError",
        "TransientProviderError",
    ]
    assert sorted(errors.__all__) == errors.__all__


def test_every_exception_class_of_the_module_is_exported() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert defined == set(errors.__all__)


@pytest.mark.parametrize(("name", "parent"), sorted(PARENTS.items()))
def test_each_error_has_its_drawn_parent(name: str, parent: str) -> None:
    cls = getattr(errors, name)
    assert cls.__bases__ == (getattr(errors, parent, Exception),)
    assert issubclass(cls, errors.PushtrioError)


def test_the_docstring_draws_the_real_tree() -> None:
    assert errors.__doc__ is not None
    drawn: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        # The indentation up to a class name gives its depth in the drawing.
        match = re.match(r"^([\s│├└─]*)([A-Z][A-Za-z]+)\b", line)
        if match is None or match.group(2) not in PARENTS:
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[match.group(2)] = stack[-1][1] if stack else "Exception"
        stack.append((depth, match.group(2)))
    assert drawn == PARENTS


def test_errors_carry_their_details() -> None:
    config = errors.ConfigError("PORT", "x", "expected an integer")
    assert (config.variable, config.value, config.reason) == ("PORT", "x", "expected an integer")
    assert str(config) == "PORT='x': expected an integer"
    invalid = errors.NotificationTooLarge("data is too large", "data")
    assert (invalid.reason, invalid.field) == ("data is too large", "data")
    provider = errors.TransientProviderError("fcm", "503 unavailable")
    assert (provider.provider, provider.reason) == ("fcm", "503 unavailable")
    assert str(provider) == "fcm: 503 unavailable"


def test_package_exports_its_version() -> None:
    assert pushtrio.__all__ == ["__version__"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pushtrio.__version__)
