"""Named states for the per-request and per-connection state machines.

What an `enum.Enum` member gives (identity, a name, words for error messages) without its
cost: on Python 3.11, `EnumType.__getattr__` makes every `State.OPEN` lookup about ten times
slower than a plain class attribute's (measured 137 against 15 ns), and a request checks its
states several times. A subclass declares its members and creates them with `define`:

    class Light(NamedState):
        ON: ClassVar[Light]
        OFF: ClassVar[Light]
    Light.define(ON="lit", OFF="dark")
"""

from __future__ import annotations


class NamedState:
    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value  # in words, for error messages

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}>"

    @classmethod
    def define(cls, **values: str) -> None:
        for name, value in values.items():
            setattr(cls, name, cls(name, value))
