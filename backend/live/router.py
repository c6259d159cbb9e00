"""WebSocket `/ws`: live events for the signed-in wallet (its registration confirmed, rewards
created and settled) and, for staff, batches and the pool. Authenticate with the access token
as the `token` query parameter (browsers cannot set headers on a WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from backend.core.security import Unauthorized
from backend.core.wiring import Resources
from backend.live.service import channels_of, stream

router = APIRouter(tags=["live"])

POLICY_VIOLATION = 1008


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    resources: Resources = websocket.app.state.resources
    try:
        principal = resources.tokens.read(websocket.query_params.get("token", ""))
    except Unauthorized as exc:
        await websocket.close(code=POLICY_VIOLATION, reason=exc.detail)
        return
    await websocket.accept()
    channels = channels_of(principal)
    await websocket.send_json({"type": "subscribed", "data": {"channels": channels}})

    async def forward() -> None:
        async for message in stream(resources.redis, channels):
            await websocket.send_text(message)

    async def until_closed() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()  # clients send nothing; this notices a close

    tasks = [asyncio.create_task(forward()), asyncio.create_task(until_closed())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
