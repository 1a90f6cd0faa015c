"""Session types: a name, a state model, handlers that decide and folds that change state."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_type_hints

import pydantic
from pydantic import BaseModel

from eventstore.codec import Codec
from eventstore.errors import UsageError

from .policies import DEFAULT_RETRY, Budget, RetryPolicy

if TYPE_CHECKING:
    from .context import ObjectContext

S = TypeVar("S", bound=BaseModel)
I = TypeVar("I", bound=BaseModel)  # noqa: E741 - input
O = TypeVar("O", bound=BaseModel | None)  # noqa: E741 - output (None: no reply value)
E = TypeVar("E", bound=BaseModel)


HandlerFn = Callable[["ObjectContext[Any]", Any], Awaitable[Any]]


@dataclass(frozen=True)
class Handler(Generic[S, I, O]):
    """A registered handler: what a client calls by name."""

    object_name: str
    name: str
    fn: Callable[[ObjectContext[S], I], Awaitable[O]]
    input_type: type[I]
    output_type: type[O] | None
    kind: Literal["exclusive", "shared"]
    retry: RetryPolicy
    deadline: float | None = None
    """Seconds from the first attempt after which the invocation ends with a timeout."""
    budget: Budget | None = None
    """Retry and cost limits of one invocation."""
    on_failure: Literal["continue", "park"] = "continue"
    """After a dead letter: go on with the session's next message, or park the session until
    the dead letter is replayed or discarded (for sessions whose next steps need this one)."""

    async def __call__(self, ctx: ObjectContext[S], payload: I) -> O:
        """Run the handler function (the runtime does this; tests may too)."""
        return await self.fn(ctx, payload)


class VirtualObject(Generic[S]):
    """A session type: keyed, always existing, one exclusive message at a time per key.

    Example::

        agent = VirtualObject("agent", state=AgentState)

        @agent.handler()
        async def ask(ctx: ObjectContext[AgentState], q: Question) -> Answer:
            text = await ctx.run("llm", lambda: llm(q.text))
            ctx.emit(Answered(text=text))
            return Answer(text=text)

        @agent.on_event(Answered)
        def answered(state: AgentState, event: Answered) -> None:
            state.answers.append(event.text)
    """

    def __init__(
        self,
        name: str,
        *,
        state: type[S],
        retry: RetryPolicy = DEFAULT_RETRY,
        codec: Codec | None = None,
    ) -> None:
        if not name or "/" in name:
            raise UsageError(f"session type name {name!r} must be non-empty and contain no '/'")
        if not (isinstance(state, type) and issubclass(state, BaseModel)):
            raise UsageError(f"state of {name!r} must be a pydantic model class, got {state!r}")
        self.name = name
        self.state_type = state
        self.retry = retry
        self.codec = codec or Codec()
        self.handlers: dict[str, Handler[S, Any, Any]] = {}
        self.folds: dict[type[BaseModel], Callable[[S, Any], S | None]] = {}

    def handler(
        self,
        name: str | None = None,
        *,
        kind: Literal["exclusive", "shared"] = "exclusive",
        retry: RetryPolicy | None = None,
        deadline: float | None = None,
        budget: Budget | None = None,
        on_failure: Literal["continue", "park"] = "continue",
    ) -> Callable[[Callable[[ObjectContext[S], I], Awaitable[O]]], Handler[S, I, O]]:
        """Register an async handler taking one pydantic model and returning one.

        Shared handlers only read state and may run concurrently with any other handler.
        """

        def decorate(fn: Callable[[ObjectContext[S], I], Awaitable[O]]) -> Handler[S, I, O]:
            handler_name = name or fn.__name__
            if not inspect.iscoroutinefunction(fn):
                raise UsageError(f"handler {self.name}.{handler_name} must be an async function")
            if handler_name in self.handlers or handler_name.startswith("__"):
                raise UsageError(f"handler name {self.name}.{handler_name} is taken or reserved")
            hints = get_type_hints(fn)
            params = [p for p in inspect.signature(fn).parameters if p != "return"]
            if len(params) != 2:
                raise UsageError(
                    f"handler {self.name}.{handler_name} must take (ctx, payload), got {len(params)} parameters"
                )
            input_type = hints.get(params[1])
            if not (isinstance(input_type, type) and issubclass(input_type, BaseModel)):
                raise UsageError(
                    f"payload of {self.name}.{handler_name} must be annotated with a pydantic model, got {input_type!r}"
                )
            output = hints.get("return")
            output_type = output if isinstance(output, type) and issubclass(output, BaseModel) else None
            if output not in (None, type(None)) and output_type is None:
                raise UsageError(f"{self.name}.{handler_name} must return a pydantic model or None, got {output!r}")
            h: Handler[S, I, O] = Handler(
                self.name,
                handler_name,
                fn,
                input_type,  # type: ignore[arg-type]  # checked above to be a model class
                output_type,  # type: ignore[arg-type]  # ditto, or None
                kind,
                retry or self.retry,
                deadline,
                budget,
                on_failure,
            )
            self.handlers[handler_name] = h
            return h

        return decorate

    def on_event(
        self, event: type[E], *, name: str | None = None, version: int = 1
    ) -> Callable[[Callable[[S, E], S | None]], Callable[[S, E], S | None]]:
        """Register the fold of one event type and the event type with the codec.

        The fold changes `state` in place (return None) or returns the new state. It must be
        pure: replay, snapshots and live handling all run it.
        """

        def decorate(fn: Callable[[S, E], S | None]) -> Callable[[S, E], S | None]:
            if event in self.folds:
                raise UsageError(f"{self.name} already has a fold for {event.__qualname__}")
            if not self.codec.knows(event):
                self.codec.register(event, name=name, version=version)
            self.folds[event] = fn
            return fn

        return decorate

    def initial_state(self) -> S:
        """The state of a session that has no events yet."""
        try:
            return self.state_type()
        except pydantic.ValidationError as exc:
            raise UsageError(
                f"state model of {self.name!r} needs defaults for every field so that a new session can exist"
            ) from exc

    def fold(self, state: S, event: BaseModel) -> S:
        """Apply one event to `state` and return the resulting state."""
        fn = self.folds.get(type(event))
        if fn is None:
            raise UsageError(
                f"{self.name} has no fold for {type(event).__qualname__}; "
                f"register one with @{self.name}.on_event({type(event).__name__})"
            )
        result = fn(state, event)
        return state if result is None else result
