import asyncio

import numpy as np
import pytest

from rgbdcast import AsyncClient, ServerTimeout, StreamKind


def test_async_client_streams_and_pings(endpoint: str) -> None:
    async def main() -> None:
        events: list[str] = []
        client = AsyncClient(endpoint, heartbeat_period=100)
        AsyncClient.on_add_device.connect(
            lambda s, device_id: events.append(device_id), sender=client, weak=False
        )
        async with client:
            assert client.server_name == "test server" and events == ["mock0"]
            assert 0 < await client.ping() < 1
            sub = client.subscribe("mock0", StreamKind.depth)
            seqs = []
            async for frame in sub:
                assert frame.array.dtype == np.uint16
                seqs.append(frame.seq)
                if len(seqs) == 5:
                    break
            assert seqs == sorted(seqs)
            body = client.subscribe("mock0", "body")
            latest = await body.latest(timeout=5)
            assert latest is not None and len(latest.bodies[0].joints) == 25
            await asyncio.sleep(0.3)  # heartbeats keep going
            assert client.is_connected and sub.snapshot().frames >= 5
        assert not client.is_connected

    asyncio.run(main())


def test_async_client_times_out_clearly() -> None:
    async def main() -> None:
        client = AsyncClient("tcp://127.0.0.1:9", response_timeout=200)
        with pytest.raises(ServerTimeout):
            await client.connect()

    asyncio.run(main())


def test_async_client_reconnects_when_the_server_returns() -> None:
    from rgbdcast import MockDevice, Server

    srv = Server(address="127.0.0.1", announce=False)
    srv.add_device(MockDevice("mock0", color_size=(64, 36)))
    srv.start()
    port = srv.port

    async def main() -> list[str]:
        events: list[str] = []
        client = AsyncClient(f"tcp://127.0.0.1:{port}", heartbeat_period=100, response_timeout=300)
        AsyncClient.on_connect.connect(
            lambda s: events.append("connect"), sender=client, weak=False
        )
        AsyncClient.on_disconnect.connect(
            lambda s: events.append("disconnect"), sender=client, weak=False
        )
        async with client:
            sub = client.subscribe("mock0", "depth")
            await sub.get(timeout=5)
            srv.stop()
            for _ in range(50):
                if "disconnect" in events:
                    break
                await asyncio.sleep(0.1)
            srv2 = Server(address="127.0.0.1", announce=False, port=port)
            srv2.add_device(MockDevice("mock0", color_size=(64, 36)))
            srv2.start()
            try:
                for _ in range(50):
                    if events.count("connect") == 2:
                        break
                    await asyncio.sleep(0.1)
                frame = None
                for _ in range(100):  # frames flow again from the new server's endpoint
                    frame = await sub.get(timeout=5)
                    if frame.seq < 30:
                        break
                assert frame is not None and frame.seq < 30
            finally:
                srv2.stop()
        return events

    events = asyncio.run(main())
    assert events[:3] == ["connect", "disconnect", "connect"]


def test_async_client_calibration_framesets_and_point_clouds() -> None:
    """The asyncio twin of Client's geometry: the same calibration, matched framesets with
    async for, and the same cloud (computed off the event loop)."""
    from rgbdcast import MockDevice, Server
    from rgbdcast.geometry import point_cloud

    srv = Server("127.0.0.1", announce=False)
    dev = MockDevice("amock", color_size=(320, 180))
    srv.add_device(dev)

    async def main() -> None:
        async with AsyncClient(f"tcp://127.0.0.1:{srv.port}") as client:
            cal = await client.calibration("amock")
            assert cal == dev.calibration()
            async with client.subscribe_frameset("amock") as sets:
                frames = await sets.get(timeout=5)
                async for more in sets:  # and as an async iterator
                    assert more[StreamKind.depth].frameset_id > frames[StreamKind.depth].frameset_id
                    break
            ids = {f.frameset_id for f in frames.values()}
            assert len(ids) == 1 and set(frames) == {StreamKind.depth, StreamKind.color}
            cloud = await client.point_cloud(frames)
            local = point_cloud(frames[StreamKind.depth].array, frames[StreamKind.color].array, cal)
            np.testing.assert_array_equal(cloud.points, local.points)
            assert await client.calibration_table("amock") is None  # the mock has no table

    with srv:
        asyncio.run(main())
