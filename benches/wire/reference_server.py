#!/usr/bin/env python3
"""An OpenAI-style streaming server written without perfscope's code, for the wire
TTFT bench: asyncio raw HTTP/1.1 keep-alive, chunked SSE, a fixed time to the first
token and between tokens. Standard library only.

    python3 reference_server.py PORT [TTFT_MS] [ITL_MS] [TOKENS]
"""
import asyncio
import json
import sys

PORT = int(sys.argv[1])
TTFT = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.1
ITL = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.02
TOKENS = int(sys.argv[4]) if len(sys.argv) > 4 else 8

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def chunk(obj):
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    payload = ("data: " + data + "\n\n").encode()
    return b"%x\r\n%s\r\n" % (len(payload), payload)


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(HEAD)
            writer.write(chunk({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}))
            await writer.drain()
            await asyncio.sleep(TTFT)
            for i in range(TOKENS):
                if i:
                    await asyncio.sleep(ITL)
                writer.write(chunk({"choices": [{"index": 0, "delta": {"content": "tok%d " % i}}]}))
                await writer.drain()
            writer.write(chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}))
            writer.write(chunk({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": TOKENS}}))
            writer.write(chunk("[DONE]"))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=4096)
    async with server:
        await server.serve_forever()


asyncio.run(main())
