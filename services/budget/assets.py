"""Lazy assets in least-recently-used order, and which to evict. Pure.

The shelf is a dict in LRU order: the first asset is the least recently used;
registering or touching an asset moves it to the end. Eviction walks from
the front and takes assets (of one device, or any) until the MB freed reach
the target or nothing is left; it never evicts more than it must. Evicting
tells the owner to unload (an ``asset.evicted`` event): the budget stops
counting the asset at once, and credits what the latest telemetry sample
still shows of it (``admission.credit``).
"""

from __future__ import annotations

import msgspec

from schemas.budget import AssetRegistered, AssetView, Device
from services.budget import admission
from services.budget.admission import Book

Asset = AssetView
"""An asset on the shelf is what the snapshot shows of it."""


Shelf = dict[str, Asset]


def register(shelf: Shelf, data: AssetRegistered, now: float) -> Asset:
    """Add or replace; a replacement of the same size and device keeps its
    registration time (the telemetry already shows it)."""
    old = shelf.pop(data.asset_id, None)
    same = old is not None and (old.size_mb, old.device) == (data.size_mb, data.device)
    asset = AssetView(
        asset_id=data.asset_id,
        size_mb=data.size_mb,
        kind=data.kind,
        device=data.device,
        owner=data.owner,
        registered=old.registered if same and old is not None else now,
        last_used=now,
        metadata=dict(data.metadata),
    )
    shelf[data.asset_id] = asset
    return asset


def touch(shelf: Shelf, asset_id: str, now: float) -> Asset | None:
    asset = shelf.pop(asset_id, None)
    if asset is not None:
        asset = shelf[asset_id] = msgspec.structs.replace(asset, last_used=now)
    return asset


def unseen(shelf: Shelf, book: Book) -> dict[str, float]:
    """MB per device of assets registered after the latest sample."""
    out = {"ram": 0.0, "vram": 0.0}
    for asset in shelf.values():
        if not admission.shown(book, asset.registered):
            out[asset.device] += asset.size_mb
    return out


def evict_lru(
    shelf: Shelf, book: Book, target_mb: int, device: Device | None, now: float
) -> list[Asset]:
    """Remove least recently used assets until ``target_mb`` is freed."""
    chosen: list[Asset] = []
    freed = 0
    for asset in shelf.values():
        if freed >= target_mb:
            break
        if device is None or asset.device == device:
            chosen.append(asset)
            freed += asset.size_mb
    for asset in chosen:
        del shelf[asset.asset_id]
        if admission.shown(book, asset.registered):
            admission.credit(book, now, **{asset.device: asset.size_mb})
    return chosen


def pressure(
    shelf: Shelf, book: Book, now_held: dict[str, float], now: float
) -> list[tuple[Asset, str]]:
    """When RAM or VRAM holds more than its limit, evict LRU assets of that
    device until ``lazy_asset_target_mb`` is freed; each with its reason."""
    out: list[tuple[Asset, str]] = []
    target = book.limits.lazy_asset_target_mb
    devices: tuple[Device, ...] = ("vram", "ram")
    for device in devices:
        cap = admission.limit_of(book.limits, device)
        over = now_held[device]
        if over <= cap or target <= 0:
            continue
        for asset in evict_lru(shelf, book, target, device, now):
            reason = (
                f"pressure: {device} holds {admission.num(over)} MB, over "
                f"{admission.LIMIT_NAME[device]} {admission.num(cap)}; least recently used "
                f"(last used at {asset.last_used:.3f}), freeing up to "
                f"lazy_asset_target_mb {target}"
            )
            out.append((asset, reason))
    return out
