"""Sync routes that cost one worker-thread hop, not two.

FastAPI runs a sync route in a worker thread, then validates the model it
returned against the response model in a *second* worker-thread hop before
serialising it. Each hop is a wake-up of a thread and of the event loop: on a
write that is a tenth of what the user waits for above the disk.

:func:`one_hop` runs the route and serialises its model in the same hop and
hands FastAPI the bytes. Nothing is lost: the model is the route's own, built
(and so validated) by the code that returned it, and :func:`one_hop` checks
that it is exactly the declared response model, so the bytes are the ones
FastAPI would have sent. Headers and a status that dependencies or the route
put on the injected :class:`~fastapi.Response` are carried over, as FastAPI
does for a model. A ``status_code=`` given to the route decorator is not seen
here (the answer is 200 unless the route sets another): such a route does not
use it.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

# The injected Response, for a route that does not ask for one itself.
_CARRIER = "_one_hop_response"


def one_hop(route: Callable[..., BaseModel]) -> Callable[..., Awaitable[Response]]:
    """``route`` (a sync path operation returning its response model) as an
    async one that runs it, and dumps its answer to JSON, in one thread hop."""
    model = typing.get_type_hints(route).get("return")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{route.__qualname__} must be annotated to return one pydantic model")
    signature = inspect.signature(route)
    given = signature.parameters.items()
    carrier = next((n for n, p in given if p.annotation in (Response, "Response")), None)
    parameters = list(signature.parameters.values())
    if carrier is None:
        parameters.append(
            inspect.Parameter(_CARRIER, inspect.Parameter.KEYWORD_ONLY, annotation=Response)
        )

    def answer(kwargs: dict[str, Any]) -> bytes:
        result = route(**kwargs)
        if type(result) is not model:
            # FastAPI would convert or filter it: this wrapper would not.
            raise TypeError(f"{route.__qualname__} returned {type(result).__name__}, not {model}")
        return result.model_dump_json().encode()

    @functools.wraps(route)
    async def wrapper(**kwargs: Any) -> Response:
        injected: Response = kwargs[carrier] if carrier else kwargs.pop(_CARRIER)
        body = await run_in_threadpool(answer, kwargs)
        response = Response(
            body, status_code=injected.status_code or 200, media_type="application/json"
        )
        response.headers.raw.extend(injected.headers.raw)
        return response

    # FastAPI reads the parameters (and the return type, for the documented
    # response model) from here; it resolves the annotations in route's module.
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapper
