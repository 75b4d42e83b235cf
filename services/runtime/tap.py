"""Subscriptions whose messages skip nats-py's per-message machinery.

For every message nats-py builds a ``Msg`` (parsing its headers into a
dict), puts it on the subscription's queue, and a task per subscription takes
it off and awaits the callback: about 25-35 us of CPU per message here, as
much as a hot path's own work. Three paths receive one message per event and
need none of that, only the subject, the reply subject, the body and (rarely)
the status line: the store's consumer, the acks of :meth:`Bus.send_many` and
a follower's ``stored.*`` messages.

:func:`subscribe_raw` taps the client's message hook (``Client._process_msg``,
which the parser awaits for every ``MSG``/``HMSG``; nats-py is pinned below
3): a message of a tapped subscription (by its sid) goes to a plain function
``handler(subject, reply, data, headers)`` -- all bytes, ``headers`` the raw
header block or None -- in the parser's own step, in arrival order, with no
task; everything else goes to nats-py as before. A handler must be quick and
must not raise (an exception is logged and the message dropped: the read
loop must go on); it may return an awaitable (answering a flow-control
request), which is awaited there.

The subscription stays an ordinary nats-py subscription (no callback): it is
re-subscribed after a reconnect under the same sid, and
:meth:`RawSubscription.unsubscribe` removes the handler first, so nothing
reaches a handler after it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from services.runtime.logs import get_logger

log = get_logger("runtime.tap")

Handler = Callable[[bytes, bytes, bytes, bytes | None], Awaitable[None] | None]
"""``handler(subject, reply, data, headers)`` (headers: the raw block or None)."""

_ATTR = "_gpuroute_tap"


class _Tap:
    """The hook of one client: handlers by sid."""

    def __init__(self, nc: Client) -> None:
        self.handlers: dict[int, Handler] = {}
        self.failures = 0
        process, handlers, stats = nc._process_msg, self.handlers, nc.stats

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            handler = handlers.get(sid)
            if handler is None:
                return await process(sid, subject, reply, data, headers)  # type: ignore[arg-type]
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            try:
                result = handler(subject, reply, data, headers)
                if result is not None:
                    await result
            except Exception:  # a bug in a handler: never the read loop's end
                self.failures += 1
                log.exception(
                    "tapped message handler failed; message dropped",
                    extra={"fields": {"subject": subject[:200].decode(errors="replace")}},
                )

        nc._process_msg = process_msg  # type: ignore[method-assign]


def _tap(nc: Client) -> _Tap:
    tap = getattr(nc, _ATTR, None)
    if tap is None:
        tap = _Tap(nc)
        setattr(nc, _ATTR, tap)
    return tap


class RawSubscription:
    """A tapped subscription; :meth:`unsubscribe` ends it (idempotent)."""

    def __init__(self, nc: Client, sub: Subscription, sid: int) -> None:
        self.nc = nc
        self.sub = sub
        self.sid = sid

    @property
    def active(self) -> bool:
        """Still subscribed on this client (False once unsubscribed, or once the
        client is closed: nats-py then drops its subscriptions without marking them)."""
        return (
            not self.sub._closed
            and not self.nc.is_closed
            and _tap(self.nc).handlers.get(self.sid) is not None
        )

    async def unsubscribe(self) -> None:
        _tap(self.nc).handlers.pop(self.sid, None)  # what arrives now goes to nats-py: dropped
        with contextlib.suppress(nats.errors.Error):
            await self.sub.unsubscribe()


def tap_sid(nc: Client, sid: int, handler: Handler) -> None:
    """Tap an existing subscription (a ``nats.micro`` endpoint's): from now on
    its messages go to ``handler``; what arrived before went its usual way."""
    if inspect.iscoroutinefunction(handler):
        raise TypeError("a tapped handler is a plain function (it may return an awaitable)")
    _tap(nc).handlers[sid] = handler


def untap_sid(nc: Client, sid: int) -> None:
    _tap(nc).handlers.pop(sid, None)


async def subscribe_raw(
    nc: Client, subject: str, handler: Handler, queue: str = ""
) -> RawSubscription:
    """Subscribe ``subject`` (in ``queue`` group) with ``handler`` tapped in."""
    if inspect.iscoroutinefunction(handler):
        raise TypeError("a tapped handler is a plain function (it may return an awaitable)")
    tap = _tap(nc)
    # the handler is known before SUB is sent, for the first message may follow
    # at once: nats-py numbers a subscription before its first pause
    sid = nc._sid + 1
    tap.handlers[sid] = handler
    try:
        sub = await nc.subscribe(subject, queue=queue)
    except BaseException:
        tap.handlers.pop(sid, None)
        raise
    if sub._id != sid:
        tap.handlers.pop(sid, None)
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
        raise AssertionError("nats-py numbers subscriptions differently: cannot tap them")
    return RawSubscription(nc, sub, sid)
