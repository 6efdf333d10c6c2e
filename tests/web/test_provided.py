"""The typed registry handlers find their collaborators in (web/provided.py)."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from wakedock.web.provided import NotProvided, Provided, provider


class Greeter:
    def __init__(self, word: str) -> None:
        self.word = word


greeter = provider(Greeter)
GreeterDep = Annotated[Greeter, Depends(greeter)]


def _app(provided: Provided) -> FastAPI:
    app = FastAPI()
    app.state.provided = provided

    @app.get("/")
    async def hello(g: GreeterDep) -> str:
        return g.word

    return app


def test_a_handler_receives_the_instance_provided_for_its_type() -> None:
    provided = Provided()
    provided.add(Greeter, Greeter("hello"))
    with TestClient(_app(provided)) as client:
        assert client.get("/").json() == "hello"


def test_a_test_swaps_one_collaborator() -> None:
    provided = Provided()
    provided.add(Greeter, Greeter("hello"))
    app = _app(provided)
    provided.add(Greeter, Greeter("swapped"))
    with TestClient(app) as client:
        assert client.get("/").json() == "swapped"


def test_a_missing_collaborator_names_the_type() -> None:
    with pytest.raises(NotProvided, match="nothing provides Greeter"):
        Provided().get(Greeter)
