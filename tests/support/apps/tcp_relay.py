"""A TCP relay (stdlib only): each connection to :8443 is piped to $UPSTREAM (host:port).

Run inside a container as the Swarm stack's front door (tests/support/swarm_stack.py); `pipe`
is also the byte pump of the TLS relay in front of sqlmap (tests/support/socket_relay.py).
"""

import asyncio
import os


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until `source` ends or fails, then close `sink` (the first end closes the pair: a
    TLS stream cannot half-close)."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    host, port = os.environ["UPSTREAM"].rsplit(":", 1)
    try:
        upstream = await asyncio.open_connection(host, int(port))
    except OSError as exc:
        print("upstream unreachable:", exc, flush=True)
        writer.close()
        return
    await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))


async def _main() -> None:
    server = await asyncio.start_server(_handle, "0.0.0.0", 8443, backlog=1024)  # noqa: S104
    print("relaying to", os.environ["UPSTREAM"], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main())
