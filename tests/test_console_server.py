"""The console's listening socket: each connection it accepts answers without Nagle's
delay (asyncio sets TCP_NODELAY only on a socket whose proto says TCP)."""

from __future__ import annotations

import asyncio
import socket

from corral.console.server import listening


def test_connections_to_the_console_have_nagle_off() -> None:
    async def scenario() -> int:
        sock = listening("127.0.0.1", 0)
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                peer = transport.get_extra_info("socket")
                accepted.set_result(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) != 0, "an answer would wait ~40 ms for the browser's delayed ACK"
